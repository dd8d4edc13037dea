"""``action.script``: run a script text with bash, sh or python3.

The script text is never rendered: a template value spliced into code is an
injection waiting to happen. Values reach the script through its environment
instead:

- every run parameter as ``CONVEYOR_PARAM_<NAME>``, where NAME is the
  parameter name upper-cased with characters outside ``[A-Z0-9_]`` replaced
  by ``_``; strings are passed as they are, other values as JSON;
- the node's ``env`` map, rendered (this is how step outputs reach a script).

The script is written into the attempt's working directory (removed with it).
Capture, timeout, ``cwd``, ``stdin``, ``success_codes`` and ``output`` work as
for ``action.command``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from conveyor.executor.runners.base import (
    Masker,
    Renderer,
    StepContext,
    StepOutcome,
    as_text,
    invalid_field,
)
from conveyor.executor.runners.command import base_env, run_process_step

INTERPRETERS = {"bash": ".sh", "sh": ".sh", "python3": ".py"}
_NOT_ENV_NAME = re.compile(r"[^A-Z0-9_]")


def param_env_name(name: str) -> str:
    """The environment variable that carries parameter `name` into a script."""
    return "CONVEYOR_PARAM_" + _NOT_ENV_NAME.sub("_", name.upper())


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """The ``CONVEYOR_PARAM_*`` variables for a run's parameters."""
    return {param_env_name(str(name)): as_text(value) for name, value in params.items()}


def run_script(node: Mapping[str, Any], ctx: StepContext, masker: Masker) -> StepOutcome:
    """Execute an ``action.script`` node."""
    data = node.get("data") or {}
    r = Renderer(ctx.node_id, data, ctx.scope)
    interpreter = data.get("interpreter", "bash")
    if interpreter not in INTERPRETERS:
        raise invalid_field(
            ctx.node_id, "data.interpreter", f"expected one of {', '.join(INTERPRETERS)}"
        )
    script = data.get("script")
    if not isinstance(script, str):
        raise invalid_field(ctx.node_id, "data.script", "expected the script text")
    env = base_env(ctx)
    params = ctx.scope.get("params") or {}
    if isinstance(params, Mapping):
        env.update(param_env(params))
    env.update(r.field_map("env"))
    return run_process_step(
        [interpreter],
        env=env,
        node=node,
        ctx=ctx,
        masker=masker,
        renderer=r,
        script=(script, INTERPRETERS[interpreter]),
    )
