"""kombu's Redis transport, keeping one Redis client per connection pool.

kombu's Redis channel builds a new `redis.Redis` for every message it publishes, every
message it acknowledges and every delivery it records as unacknowledged (`conn_or_acquire`,
`pipe_or_acquire`). Building one costs about 0.1 ms here, most of it redis-py copying its
table of response callbacks, and a one-step run pays it five or more times across the
executor and the worker. A client on a connection pool is safe to share between threads
(each command takes a connection from the pool, each pipeline is its own object), so the
channel below builds it once per pool: a new pool (after a reconnect) gets a new client.

Selected for `redis://` broker URLs by `make_celery`; `rediss://` keeps kombu's own
transport, whose TLS defaults are tied to that scheme's name.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

#: The transport's import path, as Celery's `broker_transport` setting takes it.
TRANSPORT = f"{__name__}:Transport"


# The stubs leave out the private client method this class overrides: typed as Any.
class Channel(kombu_redis.Channel):  # type: ignore[misc]
    """A Redis channel whose synchronous client is built once per connection pool."""

    _shared_client: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        base: Any = super()
        if asynchronous:
            return base._create_client(asynchronous=True)
        pool = self.pool
        shared = self._shared_client
        if shared is None or shared[0] is not pool:
            shared = self._shared_client = (pool, base._create_client())
        return shared[1]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel` above."""

    Channel = Channel
