"""Benchmarks: Conveyor in distributed mode next to raw Celery on the same machine and Redis."""
