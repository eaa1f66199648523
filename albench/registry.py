"""Name -> component registries, one per kind, in the style of timm's ``register_model``.

Built-ins and third-party plugins go through the same door: a decorator call on import. Plugins are
found through entry-point groups (``albench.strategies`` …), loaded lazily on the first lookup, or
through ``--plugin FILE``. Each entry remembers where it came from so ``albench list`` can say so.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Generic, Iterator, TypeVar

from albench.errors import AlbenchError, ConfigError

T = TypeVar("T")

# Set while an entry point or plugin file is being imported, so that registrations made by that
# import are attributed to it rather than guessed from module names.
_current_origin: list[str] = []

#: Plugin files loaded into this process (resolved paths, in load order), so that executors can load
#: the same files into their worker processes.
loaded_plugin_files: list[str] = []


@dataclass
class Entry(Generic[T]):
    """One registered component: the object plus what is known about it."""

    name: str
    obj: T
    origin: str
    description: str
    meta: dict[str, Any] = field(default_factory=dict)

    def create(self, **params: Any) -> Any:
        return self.obj(**params)


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _origin_of(obj: Any) -> str:
    if _current_origin:
        return _current_origin[-1]
    module = getattr(obj, "__module__", "") or ""
    return "built-in" if module.startswith("albench.") else f"module {module}"


class Registry(Generic[T]):
    """A named collection of components of one kind.

    ``register`` is a decorator; ``get`` looks a name up (loading entry points first) and raises a
    one-line :class:`ConfigError` with the closest known names for a typo.
    """

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry[T]] = {}
        self._entry_points_loaded = False

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *, description: str | None = None, **meta: Any) -> Callable[[T], T]:
        """Register the decorated class or factory under ``name``; extra keywords become ``meta``."""

        def decorator(obj: T) -> T:
            self.add(name, obj, description=description, **meta)
            return obj

        return decorator

    def add(self, name: str, obj: T, *, description: str | None = None, **meta: Any) -> Entry[T]:
        if not isinstance(name, str) or not name or name != name.strip() or "," in name:
            raise ConfigError(f"invalid {self.kind} name {name!r}: expected a non-empty name without commas")
        origin = _origin_of(obj)
        if name in self._entries:
            other = self._entries[name]
            if other.obj is obj:  # the same module imported twice (e.g. entry point and file)
                return other
            raise AlbenchError(
                f"duplicate {self.kind} name {name!r}: already registered from {other.origin}, "
                f"registered again from {origin}"
            )
        entry = Entry(name, obj, origin, description or _first_doc_line(obj), dict(meta))
        self._entries[name] = entry
        return entry

    # -- plugins ------------------------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import every module advertised in this registry's entry-point group, once."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in sorted(entry_points(group=self.group), key=lambda e: (e.value.startswith("albench."), e.name)):
            dist = getattr(ep, "dist", None)
            is_builtin = ep.value.split(":")[0].split(".")[0] == "albench"
            origin = "built-in" if is_builtin else f"entry point {ep.name} ({dist.name if dist else ep.value})"
            _current_origin.append(origin)
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin must not read as a traceback from albench
                raise AlbenchError(
                    f"{self.kind} plugin entry point {ep.name!r} = {ep.value!r} failed to import: {exc}"
                ) from exc
            finally:
                _current_origin.pop()
            # An entry point may name the object itself rather than a module that registers it.
            if not inspect.ismodule(loaded) and ep.name not in self._entries:
                _current_origin.append(origin)
                try:
                    self.add(ep.name, loaded)
                finally:
                    _current_origin.pop()

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> Entry[T]:
        if name not in self._entries:
            self.load_entry_points()
        if name not in self._entries:
            known = sorted(self._entries)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(known) or 'none'})"
            )
        return self._entries[name]

    def create(self, name: str, **params: Any) -> Any:
        return self.get(name).create(**params)

    def __contains__(self, name: object) -> bool:
        self.load_entry_points()
        return name in self._entries

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        self.load_entry_points()
        for name in sorted(self._entries):
            yield self._entries[name]


def load_plugin_file(path: str | Path) -> None:
    """Import a Python file so that its ``@register`` decorators run.

    Every registration it makes is attributed to the file. An import failure becomes a one-line
    error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise AlbenchError(f"--plugin {path}: no such file")
    if path.suffix != ".py":
        raise AlbenchError(f"--plugin {path}: expected a Python file (.py)")
    resolved = path.resolve()
    module_name = "albench_plugin_" + "".join(c if c.isalnum() else "_" for c in str(resolved))
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Entry points first, so that a name clash with an installed plugin is reported either way.
    from albench.registries import all_registries

    for registry in all_registries():
        registry.load_entry_points()
    _current_origin.append(f"file {path}")
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except AlbenchError:
        del sys.modules[module_name]
        raise
    except Exception as exc:
        del sys.modules[module_name]
        raise AlbenchError(f"--plugin {path}: failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        _current_origin.pop()
    loaded_plugin_files.append(str(resolved))
