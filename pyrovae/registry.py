"""Registries: one per component kind, mapping a name in a spec to a factory.

A factory is a class (or function) whose positional parameters are the *context*
the library supplies (shapes, sizes) and whose keyword-only parameters are the
*options* a user may set in the spec. Options and their defaults are read from the
signature, so `pyrovae list`, validation and the resolved spec never go stale.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .errors import PyrovaeError, SpecError

PLUGIN_GROUP = "pyrovae.plugins"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module advertised under the ``pyrovae.plugins`` entry-point group, once.

    A plugin package declares, in its pyproject.toml::

        [project.entry-points."pyrovae.plugins"]
        my_plugin = "my_package.components"

    and registers its components at import time. A plugin that fails to import is
    reported with a warning naming it, and the rest of the library keeps working.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken third-party package must not break pyrovae
            warnings.warn(f"pyrovae plugin {ep.name!r} ({ep.value}) failed to import: {e!r}",
                          stacklevel=2)


@dataclass(frozen=True)
class Option:
    """One user-settable option of a component: its name and default."""

    name: str
    default: Any
    required: bool = False


class Registry:
    """Name -> factory for one kind of component (likelihood, prior, guide, ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable] = {}

    def register(self, name: str, factory: Callable | None = None):
        """Register ``factory`` under ``name``; usable as a decorator: ``@reg.register("x")``."""

        def add(f: Callable) -> Callable:
            if not isinstance(name, str) or not name:
                raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r}")
            old = self._entries.get(name)
            if old is not None and _qualname(old) != _qualname(f):
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {_qualname(old)}"
                )
            self._entries[name] = f
            f.registry_name = name
            return f

        return add if factory is None else add(factory)

    def module_of(self, name: str) -> str:
        """The module that registered ``name`` (saved with a run, to re-import at load)."""
        return getattr(self.get(name), "__module__", "")

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._entries

    def get(self, name: str, key: str = "") -> Callable:
        """The factory for ``name``; a :class:`SpecError` naming ``key`` if unknown."""
        load_plugins()
        if not isinstance(name, str) or name not in self._entries:
            raise SpecError(
                key, f"unknown {self.kind} {name!r}", value=name, choices=self.names()
            )
        return self._entries[name]

    def options(self, name: str, key: str = "") -> dict[str, Option]:
        """The keyword-only options of ``name`` with their defaults."""
        factory = self.get(name, key)
        sig = inspect.signature(factory)
        out = {}
        for p in sig.parameters.values():
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                required = p.default is inspect.Parameter.empty
                out[p.name] = Option(p.name, None if required else p.default, required)
        return out

    def describe(self, name: str) -> str:
        """First paragraph of the factory's docstring, on one line."""
        doc = (inspect.getdoc(self.get(name)) or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    def check_options(self, name: str, options: dict, key: str) -> dict:
        """Validate option names; return all options with defaults filled in."""
        valid = self.options(name, key)
        for opt in options:
            if opt not in valid:
                raise SpecError(
                    f"{key}.{opt}",
                    f"{self.kind} {name!r} has no option {opt!r}",
                    value=opt,
                    choices=sorted(valid),
                )
        missing = [o.name for o in valid.values() if o.required and o.name not in options]
        if missing:
            raise SpecError(key, f"{self.kind} {name!r} needs option(s) {', '.join(missing)}")
        full = {o.name: _plain(o.default) for o in valid.values() if not o.required}
        full.update(options)
        return full

    def build(self, name: str, options: dict, key: str, *context, **context_kw):
        """Construct ``name`` with the library's context and the user's options.

        A ``ValueError``/``TypeError`` from the component's own checks is re-raised as
        a :class:`SpecError` naming ``key``, so the user sees which spec entry is wrong.
        """
        factory = self.get(name, key)
        self.check_options(name, options, key)
        try:
            return factory(*context, **context_kw, **options)
        except PyrovaeError:
            raise
        except (ValueError, TypeError) as e:
            raise SpecError(key, f"{self.kind} {name!r}: {e}") from e


def _qualname(f: Callable) -> str:
    return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"


def _plain(value):
    """Tuples become lists so a resolved spec dumps to plain YAML."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
