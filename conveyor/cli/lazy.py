"""Command groups that are imported only when invoked.

`conveyor --help` lists every group with its one-line help, which is known without importing
the group's module; the module (and the grpc, protobuf and database code it needs) is loaded
when a command of the group runs, or when the group's own help is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

#: name -> (module, attribute of the typer.Typer in it, one-line help).
LazySpec = tuple[str, str, str]


class LazyCommand(TyperGroup):
    """Stands for a typer.Typer group in another module until it is used."""

    def __init__(self, *, name: str, module: str, attr: str, help: str) -> None:
        super().__init__(name=name, help=help)
        self.module = module
        self.attr = attr
        self._loaded: Any = None

    def load(self) -> Any:
        """The real group (a click command built from the module's typer.Typer)."""
        if self._loaded is None:
            sub = getattr(importlib.import_module(self.module), self.attr)
            self._loaded = typer.main.get_group(sub)
        return self._loaded

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        """Parsing is the real group's: its context (and so its invoke) is what runs."""
        return self.load().make_context(info_name, args, parent=parent, **extra)


class LazyGroup(TyperGroup):
    """The root group: typer's own commands, then the groups registered by `add_lazy_group`."""

    lazy: dict[str, LazySpec] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (module, attr, help_text) in self.lazy.items():
            self.add_command(LazyCommand(name=name, module=module, attr=attr, help=help_text))


def add_lazy_group(app: typer.Typer, name: str, module: str, attr: str, help_text: str) -> None:
    """Register `module.attr` (a typer.Typer) as the command group `name` of `app`."""
    cls = app.info.cls
    if not (isinstance(cls, type) and issubclass(cls, LazyGroup)):
        raise TypeError("the app must be made with typer.Typer(cls=LazyGroup)")
    root: type[LazyGroup] = cls
    # One registry per root app: a subclass made once, on first registration.
    if root is LazyGroup:
        root = type("RootGroup", (LazyGroup,), {"lazy": {}})
        app.info.cls = root
    root.lazy[name] = (module, attr, help_text)
