"""Egress control for ``action.http`` and ``action.notify``: where a step may connect.

A destination is checked after DNS resolution, on its IP addresses, and the request is
then sent to the checked address itself (the URL's host stays in ``Host`` and in TLS SNI
and certificate checks), so a name that resolves differently a moment later (DNS
rebinding) cannot slip through. Redirects are followed by the runner hop by hop, each
hop checked the same way.

For every address the host resolves to, in order:

1. a rule of the deny list (``CONVEYOR_EGRESS_DENY``) that matches: denied;
2. an endpoint of Conveyor itself (its database, broker, event bus, service and
   metrics addresses, from settings) on the same port: denied, unless an allow-list
   entry names that port explicitly;
3. a rule of the allow list (``CONVEYOR_EGRESS_ALLOW``) that matches: allowed;
4. a default-denied range (loopback, link-local incl. cloud metadata, ``0.0.0.0/8``,
   ``::``, ``fd00:ec2::254``): denied;
5. anything else: allowed.

If any address of a host is denied, the request is denied. A rule is a host name
(``api.example.com``, or ``.example.com`` for the domain and its subdomains), an IP
address or a CIDR (``10.0.0.0/8``, ``fd00::/8``), optionally followed by ``:port``
(``[v6]:port`` for IPv6).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from conveyor.kernel.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RULES = 1000

#: Ranges denied unless allowed, with the reason shown in the error.
DEFAULT_DENIED: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("127.0.0.0/8", "loopback"),
        ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("fe80::/10", "link-local"),
        ("fd00:ec2::254/128", "cloud metadata"),
        ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
        ("::/128", "the unspecified address"),
    )
)


class EgressDenied(Exception):
    """A destination the egress policy does not allow; the message names the rule."""


class EgressRuleError(ValueError):
    """An allow or deny list entry that cannot be read."""


@dataclass(frozen=True)
class Rule:
    """One allow or deny list entry."""

    text: str
    host: str | None = None
    network: IPNetwork | None = None
    port: int | None = None

    def matches_host(self, host: str, port: int) -> bool:
        """Whether the rule names this host (by name) and port."""
        if self.host is None or (self.port is not None and self.port != port):
            return False
        if self.host.startswith("."):
            return host == self.host[1:] or host.endswith(self.host)
        return host == self.host

    def matches_address(self, address: IPAddress, port: int) -> bool:
        """Whether the rule covers this address and port."""
        if self.network is None or (self.port is not None and self.port != port):
            return False
        return address.version == self.network.version and address in self.network


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0:
            raise EgressRuleError(f"egress rule {entry!r}: unclosed '['")
        rest = entry[end + 1 :]
        if rest and not rest.startswith(":"):
            raise EgressRuleError(f"egress rule {entry!r}: expected ':port' after ']'")
        return entry[1:end], _port(entry, rest[1:]) if rest else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(entry, port)
    return entry, None


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise EgressRuleError(f"egress rule {entry!r}: {text!r} is not a port number")
    return int(text)


def parse_rule(entry: str) -> Rule:
    """Read one rule: host, .domain, IP or CIDR, optionally with a port."""
    text = entry.strip()
    if not text:
        raise EgressRuleError("empty egress rule")
    target, port = _split_port(text)
    target = target.strip().lower().rstrip(".") if not target.endswith("/") else target
    try:
        return Rule(text, network=ipaddress.ip_network(target, strict=False), port=port)
    except ValueError:
        pass
    label = target.lstrip(".")
    if not label or any(c in label for c in "/ @") or len(label) > 253:
        raise EgressRuleError(f"egress rule {entry!r}: not a host name, IP address or CIDR")
    return Rule(text, host=target, port=port)


def parse_rules(text: str) -> list[Rule]:
    """Read a comma-separated list of rules."""
    entries = [e for e in text.split(",") if e.strip()]
    if len(entries) > MAX_RULES:
        raise EgressRuleError(f"more than {MAX_RULES} egress rules")
    return [parse_rule(e) for e in entries]


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return mapped
    return address


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for `host` (also ``0x7f000001``, ``2130706433``)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class Endpoint:
    """An address of Conveyor itself that steps may not reach."""

    host: str
    port: int
    label: str


@dataclass
class EgressPolicy:
    """Decides whether a step may connect to a host and port; see the module docstring."""

    allow: Sequence[Rule] = ()
    deny: Sequence[Rule] = ()
    own: Sequence[Endpoint] = ()
    resolver: Resolver = system_resolver
    _own_addresses: dict[tuple[IPAddress, int], str] | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        """The policy of a worker: its lists, and Conveyor's own endpoints as denied."""
        return cls(
            allow=parse_rules(settings.egress_allow),
            deny=parse_rules(settings.egress_deny),
            own=own_endpoints(settings),
        )

    def _own(self) -> dict[tuple[IPAddress, int], str]:
        if self._own_addresses is None:
            found: dict[tuple[IPAddress, int], str] = {}
            for endpoint in self.own:
                try:
                    addresses = self.resolver(endpoint.host, endpoint.port)
                except OSError:
                    continue
                for text in addresses:
                    address = _unmapped(ipaddress.ip_address(text))
                    found[(address, endpoint.port)] = endpoint.label
                    if address.is_unspecified:  # a service bound to 0.0.0.0 is on loopback too
                        found[(ipaddress.ip_address("127.0.0.1"), endpoint.port)] = endpoint.label
            self._own_addresses = found
        return self._own_addresses

    def check(self, host: str, port: int) -> str:
        """The address to connect to for `host`:`port`; raises `EgressDenied`."""
        name = host.strip("[]").lower().rstrip(".")
        for rule in self.deny:
            if rule.matches_host(name, port):
                raise EgressDenied(f"{host}:{port} is denied by CONVEYOR_EGRESS_DENY {rule.text!r}")
        try:
            addresses = self.resolver(name, port)
        except (OSError, UnicodeError) as exc:
            raise OSError(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise OSError(f"cannot resolve {host}: no address")
        host_allowed = next((r for r in self.allow if r.matches_host(name, port)), None)
        for text in addresses:
            self._check_address(host, name, port, text, host_allowed)
        return addresses[0]

    def _check_address(
        self, host: str, name: str, port: int, text: str, host_allowed: Rule | None
    ) -> None:
        address = _unmapped(ipaddress.ip_address(text))
        shown = f"{host}:{port}" if name == str(address) else f"{host}:{port} ({address})"
        for rule in self.deny:
            if rule.matches_address(address, port):
                raise EgressDenied(f"{shown} is denied by CONVEYOR_EGRESS_DENY {rule.text!r}")
        allowed = host_allowed or next(
            (r for r in self.allow if r.matches_address(address, port)), None
        )
        label = self._own().get((address, port))
        if label is not None and (allowed is None or allowed.port != port):
            raise EgressDenied(
                f"{shown} is Conveyor's own {label}, which steps may not reach"
                f" (allow it with CONVEYOR_EGRESS_ALLOW naming port {port})"
            )
        if allowed is not None:
            return
        for network, reason in DEFAULT_DENIED:
            if address.version == network.version and address in network:
                raise EgressDenied(
                    f"{shown} is {reason}, denied by default (allow it with CONVEYOR_EGRESS_ALLOW)"
                )


def _url_endpoint(url: str, label: str) -> Iterable[Endpoint]:
    if not url or url.startswith(("memory://", "sqlite")):
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return
    defaults = {"redis": 6379, "rediss": 6379, "amqp": 5672, "postgresql": 5432}
    scheme = parts.scheme.split("+", 1)[0]
    port = port or defaults.get(scheme)
    if parts.hostname and port:
        yield Endpoint(parts.hostname, port, label)


def _addr_endpoint(addr: str, label: str) -> Iterable[Endpoint]:
    host, _, port = addr.rpartition(":")
    if host and port.isdigit() and int(port) > 0:
        yield Endpoint(host.strip("[]"), int(port), label)


def own_endpoints(settings: Settings) -> list[Endpoint]:
    """Conveyor's own database, broker, event bus, services and metrics, from settings."""
    found: list[Endpoint] = []
    found += _url_endpoint(settings.database_url, "database")
    found += _url_endpoint(settings.broker_url, "broker")
    found += _url_endpoint(settings.events_url, "event bus")
    for name in ("translator", "executor", "monitor", "scheduler", "gateway", "http"):
        found += _addr_endpoint(getattr(settings, f"{name}_addr"), f"{name} service")
    for name in ("translator", "executor", "monitor", "scheduler"):
        port = getattr(settings, f"{name}_metrics_port")
        if port:
            found.append(Endpoint(settings.metrics_host, port, f"{name} metrics"))
    return found
