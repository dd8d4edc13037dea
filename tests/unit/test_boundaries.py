"""Service boundaries: no service imports another's tables or internals.

Every module of the package is parsed (ast, nothing imported) and each import is checked
against the rules written down in docs/architecture.md ("Dependency rules"):

- a service (translator, executor, monitor, scheduler, artifacts, gateway) imports its own
  modules, the kernel, `conveyor.shared`, and of another service only its public contract:
  the generated stubs (`conveyor.<service>.v1`), its `client` module and its `wire` module
  (its messages to and from plain values, e.g. the translator's typed plan);
- the gateway alone may also import `conveyor.auth` (access control at the edge);
- `conveyor.auth` imports the kernel, `conveyor.shared` and generated stubs;
- `conveyor.shared` imports only itself and the kernel; the kernel only itself;
- the composition roots (`suite.py`, `cli/`, `migrations/`, `__main__.py`) may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import conveyor

PACKAGE = Path(conveyor.__file__).parent
SERVICES = frozenset({"translator", "executor", "monitor", "scheduler", "artifacts", "gateway"})
ROOTS = frozenset({"suite", "cli", "migrations", "__main__"})
# What of another service is public: its generated contract, its client and its wire codec.
PUBLIC = frozenset({"v1", "client", "wire"})
SHARED = frozenset({"kernel", "shared"})


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in the file, relative ones resolved; for
    `from X import y` the name is `X.y` (y may be a module or a name defined in X)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _allowed(owner: str, target: list[str]) -> bool:
    """May code of `owner` (a top-level part of the package) import `target`?"""
    if owner in ROOTS:
        return True
    area = target[1] if len(target) > 1 else ""
    if area == owner or area == "kernel":
        return True
    if owner == "kernel":
        return False
    if area == "shared":
        return True
    if owner == "shared":
        return False
    if owner == "auth" or (owner == "gateway" and area == "auth"):
        return area == "auth" or (len(target) > 2 and target[2] == "v1")
    return area in SERVICES and len(target) > 2 and target[2] in PUBLIC


def violations(package: Path) -> list[str]:
    """`file:line: import X` for every import that breaks the rules, under a package folder."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        parts = relative.with_suffix("").parts
        if len(parts) > 2 and parts[2] == "v1":
            continue  # generated code
        module = ".".join(parts)
        owner = parts[1] if len(parts) > 1 else ""
        for line, name in _imports(path, module):
            target = name.split(".")
            if target[0] != package.name or _allowed(owner, target):
                continue
            found.append(f"{relative}:{line}: {owner} imports {name}")
    return found


def test_no_module_imports_another_services_internals() -> None:
    bad = violations(PACKAGE)
    assert bad == [], "imports across service boundaries:\n" + "\n".join(bad)


def _tree(root: Path, files: dict[str, str]) -> Path:
    package = root / "conveyor"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return package


def test_the_check_names_the_file_and_the_import(tmp_path: Path) -> None:
    package = _tree(
        tmp_path,
        {
            "monitor/jobs.py": (
                "from conveyor.executor.v1 import run_pb2\n"
                "from conveyor.executor.client import ExecutorClient\n"
                "from conveyor.kernel.db import Database\n"
                "def late():\n"
                "    from conveyor.executor.models import RunRow\n"
            ),
            "monitor/sub/rel.py": "from ...translator import store\n",
            "executor/tasks.py": (
                "import conveyor.artifacts.api\nfrom conveyor.auth import tokens\n"
            ),
            "kernel/models.py": "import conveyor.scheduler.store\n",
            "shared/rules.py": "from conveyor.translator.v1 import translator_pb2\n",
            "auth/roles.py": "from conveyor.gateway.v1 import gateway_service_pb2\n",
            "gateway/http.py": "from conveyor.auth.authn import bearer\n",
            "suite.py": "from conveyor.executor import api\n",
            "cli/main.py": "from conveyor.translator.domain import compile_workflow\n",
            "executor/v1/run_pb2_grpc.py": "import conveyor.monitor.hub\n",
        },
    )
    assert violations(package) == [
        "conveyor/executor/tasks.py:1: executor imports conveyor.artifacts.api",
        "conveyor/executor/tasks.py:2: executor imports conveyor.auth.tokens",
        "conveyor/kernel/models.py:1: kernel imports conveyor.scheduler.store",
        "conveyor/monitor/jobs.py:5: monitor imports conveyor.executor.models.RunRow",
        "conveyor/monitor/sub/rel.py:1: monitor imports conveyor.translator.store",
        "conveyor/shared/rules.py:1: shared imports conveyor.translator.v1.translator_pb2",
    ]
