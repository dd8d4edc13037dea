"""Alembic migrations for every Conveyor table (SQLite and PostgreSQL)."""
