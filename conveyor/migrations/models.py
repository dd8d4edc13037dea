"""Imports every service's table definitions so Base.metadata knows all of them.

This lives with the migrations, not in the kernel: the migrations are a composition root that
may see every service's tables, while the kernel depends on no service.
"""

from __future__ import annotations


def import_all_models() -> None:
    """Register every table on conveyor.kernel.db.Base.metadata."""
    import conveyor.artifacts.retention
    import conveyor.artifacts.store
    import conveyor.auth.tokens
    import conveyor.auth.webhooks
    import conveyor.executor.models
    import conveyor.kernel.feed
    import conveyor.kernel.outbox
    import conveyor.monitor.models
    import conveyor.scheduler.store
    import conveyor.translator.store  # noqa: F401
