"""The role each RPC needs, read from the `(conveyor.auth.v1.required_role)` method option."""

from __future__ import annotations

import functools
from typing import Any, cast

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor

from conveyor.auth.v1 import auth_pb2

PUBLIC_ROLES = frozenset({auth_pb2.ROLE_VIEWER, auth_pb2.ROLE_OPERATOR, auth_pb2.ROLE_ADMIN})


def required_role(method: MethodDescriptor) -> int:
    """The declared role of a method; ROLE_UNSPECIFIED when it declares none."""
    options = method.GetOptions()
    if not options.HasExtension(cast(Any, auth_pb2.required_role)):
        return auth_pb2.ROLE_UNSPECIFIED
    return int(options.Extensions[cast(Any, auth_pb2.required_role)])


@functools.lru_cache(maxsize=512)
def role_for_path(grpc_path: str) -> int:
    """The declared role of `/<package.Service>/<Method>`; ROLE_UNSPECIFIED when unknown."""
    service, _, name = grpc_path.lstrip("/").partition("/")
    try:
        desc = descriptor_pool.Default().FindServiceByName(service)
    except KeyError:
        return auth_pb2.ROLE_UNSPECIFIED
    method = desc.methods_by_name.get(name)
    return auth_pb2.ROLE_UNSPECIFIED if method is None else required_role(method)


def permits(caller_role: int, needed: int) -> bool:
    """Whether a public caller's role covers what a method needs.

    Unspecified and internal methods are never permitted at the public edge, whatever the role.
    """
    return needed in PUBLIC_ROLES and caller_role in PUBLIC_ROLES and caller_role >= needed
