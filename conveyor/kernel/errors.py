"""Domain errors shared by every service, free of any transport.

Store and domain code raise these; `conveyor.kernel.grpcserver.map_errors` turns them into
gRPC statuses with google.rpc details in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Violation:
    """One bad field: JSON pointer or field name, a stable reason code, and a message."""

    field: str
    description: str
    reason: str = ""


@dataclass
class ConveyorError(Exception):
    """Base of the domain errors; `reason` is an UPPER_SNAKE_CASE ErrorInfo reason."""

    message: str
    reason: str = "INTERNAL"
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message


@dataclass
class NotFound(ConveyorError):
    """The named resource does not exist; `violations` may name the field that referred to it."""

    reason: str = "NOT_FOUND"
    violations: list[Violation] = field(default_factory=list)


@dataclass
class AlreadyExists(ConveyorError):
    """A resource with that identity exists already."""

    reason: str = "ALREADY_EXISTS"


@dataclass
class FailedPrecondition(ConveyorError):
    """The resource is not in a state that allows the call."""

    reason: str = "FAILED_PRECONDITION"


@dataclass
class InvalidArgument(ConveyorError):
    """The request is malformed; `violations` say which fields and why."""

    reason: str = "INVALID_ARGUMENT"
    violations: list[Violation] = field(default_factory=list)


@dataclass
class Unavailable(ConveyorError):
    """A dependency (database, broker, another service) cannot be reached."""

    reason: str = "UNAVAILABLE"
