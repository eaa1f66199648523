"""Resolving a command line into fully specified experiment cells.

A cell is one (task, strategy, seed). Its :class:`CellSpec` holds every parameter that can change a
result, after presets and ``--set`` overrides, so that ``spec.json`` alone says what was run and a
resumed run can check it is continuing the same experiment.

Parameters come from three places, in increasing precedence: the component's defaults (a
strategy's constructor keywords, a task's or data set's preset), the preset (``paper``, ``quick``,
``smoke``), and ``--set key=value``. A key is either a protocol field (``initial``, ``budget``,
``rounds``), a namespaced parameter (``task.epochs``, ``strategy.gamma3``, ``dataset.size``), a
parameter of one named component (``mvaal.epochs``), or a bare parameter name found in any
namespace of the cell (``gamma3``). Dots and underscores in parameter names are interchangeable
(``vae.epochs`` finds ``vae_epochs``).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from albench.errors import ConfigError
from albench.interfaces import PRESETS, TASK_KINDS

PROTOCOL_KEYS = ("initial", "budget", "rounds")
NAMESPACES = ("task", "strategy", "dataset")


@dataclass
class CellSpec:
    """Everything that defines one (task, strategy, seed) run."""

    task: str
    strategy: str
    seed: int
    preset: str
    task_kind: str
    metrics: list[str]
    protocol: dict[str, int]
    dataset: str
    dataset_params: dict[str, Any]
    task_params: dict[str, Any]
    strategy_params: dict[str, Any]
    strategy_meta: dict[str, Any]
    device: str = "auto"
    reference: bool = False

    @property
    def primary_metric(self) -> str:
        return f"test_{self.metrics[0]}"

    @property
    def task_agnostic(self) -> bool:
        return bool(self.strategy_meta.get("task_agnostic", False))

    @property
    def label(self) -> str:
        return f"{self.task}/{self.strategy}/seed-{self.seed}"

    def run_dir(self, out: Path) -> Path:
        return Path(out) / "runs" / self.task / self.strategy / f"seed-{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["primary_metric"] = self.primary_metric
        return data

    def comparable(self) -> dict[str, Any]:
        """The fields that must match for a recorded run to be resumed by this spec."""
        return json.loads(json.dumps(self.to_dict(), sort_keys=True, default=str))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CellSpec":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: copy.deepcopy(v) for k, v in data.items() if k in names})


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]


# -- value parsing ------------------------------------------------------------------------------
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(key: str, text: str, default: Any) -> Any:
    """Parse ``text`` as the type of ``default``; a mismatch is a one-line ConfigError."""
    try:
        if isinstance(default, bool):
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
        if isinstance(default, (list, tuple)):
            value = json.loads(text)
            if not isinstance(value, list):
                raise ValueError
            return value
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default).__name__
        raise ConfigError(f"--set {key}={text}: expected {kind} (default {default!r})") from None
    # No typed default (None): accept JSON scalars, else the string itself.
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_overrides(items: Iterable[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item}: expected key=value")
        pairs.append((key.strip(), value.strip()))
    return pairs


# -- component parameters -----------------------------------------------------------------------
def strategy_defaults(obj: Any) -> dict[str, Any]:
    """A strategy's parameters: its constructor's keyword arguments and their defaults."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return {}
    params = {}
    for name, p in signature.parameters.items():
        if name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        params[name] = None if p.default is inspect.Parameter.empty else p.default
    return params


def _match_param(params: Mapping[str, Any], name: str) -> str | None:
    if name in params:
        return name
    alt = name.replace(".", "_")
    return alt if alt in params else None


@dataclass
class _Override:
    key: str
    value: str
    used: bool = False
    valid: set[str] = field(default_factory=set)


def _apply_overrides(cell: dict[str, Any], overrides: list[_Override]) -> None:
    """Apply each override that names something in this cell; remember which were used."""
    spaces = {"task": cell["task_params"], "strategy": cell["strategy_params"], "dataset": cell["dataset_params"]}
    names = {"task": cell["task"], "strategy": cell["strategy"], "dataset": cell["dataset"]}
    for ov in overrides:
        ov.valid.update(PROTOCOL_KEYS)
        for space, params in spaces.items():
            ov.valid.update(f"{space}.{k}" for k in params)
        if ov.key in PROTOCOL_KEYS:
            if cell["reference"]:
                ov.used = True
                continue
            cell["protocol"][ov.key] = coerce(ov.key, ov.value, cell["protocol"][ov.key])
            ov.used = True
            continue
        head, _, rest = ov.key.partition(".")
        targets: list[tuple[str, str]] = []
        if head in spaces and rest:
            hit = _match_param(spaces[head], rest)
            if hit:
                targets.append((head, hit))
        elif rest and head in names.values():
            for space, name in names.items():
                hit = _match_param(spaces[space], rest) if name == head else None
                if hit:
                    targets.append((space, hit))
        else:
            for space, params in spaces.items():
                hit = _match_param(params, ov.key)
                if hit:
                    targets.append((space, hit))
            if len(targets) > 1:
                options = " or ".join(f"{space}.{param}" for space, param in targets)
                raise ConfigError(f"--set {ov.key}: ambiguous for {cell['task']}/{cell['strategy']}; write {options}")
        for space, param in targets:
            spaces[space][param] = coerce(ov.key, ov.value, spaces[space][param])
            ov.used = True


def resolve_cells(
    *,
    tasks: list[str],
    strategies: list[str],
    seeds: Iterable[int],
    preset: str | None = None,
    overrides: Iterable[str] = (),
    device: str = "auto",
) -> list[CellSpec]:
    """The whole grid, task-major, every cell fully resolved; bad names and keys fail here."""
    from albench.registries import datasets as dataset_registry
    from albench.registries import strategies as strategy_registry
    from albench.registries import tasks as task_registry

    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"--preset {preset}: expected one of {', '.join(PRESETS)}")
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("--seeds: expected at least one seed")
    pending = [_Override(k, v) for k, v in parse_overrides(overrides)]
    task_entries = [task_registry.get(t) for t in tasks]
    strategy_entries = [strategy_registry.get(s) for s in strategies]
    for task_entry in task_entries:
        kind = getattr(task_entry.obj, "kind", None)
        if kind not in TASK_KINDS:
            raise ConfigError(f"task {task_entry.name!r} declares kind {kind!r}; expected one of {', '.join(TASK_KINDS)}")
        for strategy_entry in strategy_entries:
            supported = strategy_entry.meta.get("task_kinds")
            if supported is not None and kind not in set(supported):
                raise ConfigError(
                    f"strategy {strategy_entry.name!r} does not support task {task_entry.name!r} "
                    f"(kind {kind}; it supports: {', '.join(sorted(supported))})"
                )

    cells: list[CellSpec] = []
    for task_entry in task_entries:
        task_cls = task_entry.obj
        task_preset = preset or task_cls.default_preset
        if task_preset not in task_cls.presets:
            raise ConfigError(f"task {task_entry.name!r} has no preset {task_preset!r} (it has: {', '.join(task_cls.presets)})")
        recipe = dataset_registry.get(task_cls.dataset).obj()
        for strategy_entry in strategy_entries:
            strategy_params = strategy_defaults(strategy_entry.obj)
            strategy_params.update(getattr(strategy_entry.obj, "presets", {}).get(task_preset, {}))
            for seed in seeds:
                cell = {
                    "task": task_entry.name,
                    "strategy": strategy_entry.name,
                    "seed": int(seed),
                    "preset": task_preset,
                    "task_kind": task_cls.kind,
                    "metrics": list(task_cls.metrics),
                    "protocol": {k: int(v) for k, v in task_cls.presets[task_preset]["protocol"].items()},
                    "dataset": task_cls.dataset,
                    "dataset_params": dict(recipe.protocol(task_preset, dict(getattr(task_cls, "dataset_params", {})))),
                    "task_params": copy.deepcopy(dict(task_cls.presets[task_preset]["params"])),
                    "strategy_params": copy.deepcopy(strategy_params),
                    "strategy_meta": {k: sorted(v) if isinstance(v, (set, frozenset)) else v for k, v in strategy_entry.meta.items()},
                    "device": device,
                    "reference": bool(strategy_entry.meta.get("reference", False)),
                }
                _apply_overrides(cell, pending)
                resolve = getattr(strategy_entry.obj, "params_for", None)
                if resolve is not None:
                    cell["strategy_params"] = dict(resolve(task_cls.kind, dict(cell["strategy_params"])))
                _check_protocol(cell)
                cells.append(CellSpec(**cell))
    for ov in pending:
        if not ov.used:
            valid = ", ".join(sorted(ov.valid))
            raise ConfigError(f"--set {ov.key}: unknown key (valid keys here: {valid})")
    return cells


def _check_protocol(cell: Mapping[str, Any]) -> None:
    protocol = cell["protocol"]
    for key in PROTOCOL_KEYS:
        if key not in protocol:
            raise ConfigError(f"task {cell['task']!r}: preset {cell['preset']!r} lacks protocol field {key!r}")
    if protocol["initial"] < 1 or protocol["budget"] < 1 or protocol["rounds"] < 0:
        raise ConfigError(
            f"task {cell['task']}: expected initial >= 1, budget >= 1, rounds >= 0 "
            f"(got initial={protocol['initial']}, budget={protocol['budget']}, rounds={protocol['rounds']})"
        )
