"""Ablation grids: expanding strategy x trainer x tau x seed into cells, and reading cells back from the store.

`expand` turns the comma lists of `workbench ablate` into `Cell`s (validated here, so bad input fails before any
model is loaded). `CellResult` is one stored run seen as a grid cell: its strategy, trainer, main threshold,
other parameters and seed are read from the run's configuration (`evaluate.RunSpec.config`), so `workbench
report` and `workbench plot` rebuild the grid from any store, whoever wrote it.

A *method* is everything that identifies a cell except its tau and its seed (strategy x trainer, plus other
parameters, plugins and decode settings when they differ): its tau cells are the points of one accuracy-vs-TPF
curve and one AUP. A *group* is a method's cell at one tau: its seeds are aggregated (mean +- std).

Training seeds: a trainer label `NAME/seedK` (what `workbench ablate --model-dir DIR` gives the model folder
DIR/NAME/seedK) is training seed K of NAME. Its method is NAME's, whatever the checkpoint, so the cells of every
training seed of NAME at one tau form one group and are aggregated like decoding seeds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from workbench.decoding.registry import PluginError, strategy_names, strategy_threshold_param

__all__ = ["Cell", "CellResult", "expand", "parse_list", "parse_seeds", "parse_taus", "method_of", "split_trainer",
           "tau_of"]


def parse_list(text: str, what: str) -> list[str]:
    """`a,b,c` -> ['a', 'b', 'c'] (order kept, duplicates dropped); an empty list is a ValueError."""
    items = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not items:
        raise ValueError(f"--{what} {text!r}: give a comma-separated list, e.g. --{what} a,b")
    return items


def parse_taus(text: str) -> list[float]:
    out = []
    for item in parse_list(text, "tau"):
        try:
            tau = float(item)
        except ValueError:
            raise ValueError(f"--tau {item!r} is not a number; give main thresholds, e.g. --tau 0.95,0.5,0") from None
        if not math.isfinite(tau):  # the range is each strategy's own (its parameter's validator says it)
            raise ValueError(f"--tau {item}: give finite numbers")
        out.append(tau)
    return list(dict.fromkeys(out))


def parse_seeds(text: str) -> list[int]:
    try:
        return list(dict.fromkeys(int(s) for s in parse_list(text, "seeds")))
    except ValueError as err:
        if "--seeds" in str(err):
            raise
        raise ValueError(f"--seeds {text!r}: give integers, e.g. --seeds 0,1,2") from None


@attrs.frozen(kw_only=True)
class Cell:
    """One ablation cell to decode."""

    strategy: str
    trainer: str
    tau: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.strategy} × {self.trainer} τ={self.tau:g} seed {self.seed}"


def expand(strategies: Sequence[str], trainers: Sequence[str], taus: Sequence[float] | Mapping[str, Sequence[float]],
           seeds: Sequence[int]) -> list[Cell]:
    """Every strategy x trainer x tau x seed, trainer outermost (one model in use at a time). `taus`: one grid
    for every strategy, or each strategy's own (`{strategy: taus}`).

    Unknown strategies and strategies without a main threshold raise `PluginError` (one line, exit 2)."""
    known = strategy_names()
    for s in strategies:
        if s not in known:
            raise PluginError(f"unknown strategy {s!r} in --strategies; valid names: {', '.join(known)}")
        strategy_threshold_param(s)  # raises when --tau does not apply
    grid = taus if isinstance(taus, Mapping) else {s: taus for s in strategies}
    return [Cell(strategy=s, trainer=t, tau=tau, seed=seed)
            for t in trainers for s in strategies for tau in grid[s] for seed in seeds]


# -- cells read back from stored runs ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _main_threshold(strategy: str) -> tuple[str | None, Any]:
    """(name, default) of a strategy's main threshold; (None, None) when unknown or absent."""
    try:
        name = strategy_threshold_param(strategy)
    except PluginError:
        return None, None
    from workbench.decoding.registry import available_strategies

    for info in available_strategies():
        if info.name == strategy:
            return name, info.params.get(name)
    return name, None


def _threshold_name(config: dict) -> str | None:
    """The main threshold's name: stored with the run (so a strategy that is no longer installed still
    reads), else looked up from the installed strategy (runs stored before it was recorded)."""
    if "main_threshold" in config:
        return config["main_threshold"]
    return _main_threshold(config.get("strategy", ""))[0]


def tau_of(config: dict) -> float | None:
    """The main threshold of a stored run: its parameter, else the strategy's default."""
    name = _threshold_name(config)
    if name is None:
        return None
    params = config.get("params", {})
    value = params[name] if name in params else _main_threshold(config.get("strategy", ""))[1]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _other_params(config: dict) -> dict:
    """The parameters shown beside a run: those set away from the strategy's defaults (`params_set`), without
    the main threshold; every parameter for runs stored before `params_set` existed."""
    name = _threshold_name(config)
    shown = config.get("params_set", config.get("params", {}))
    return {k: v for k, v in sorted(shown.items()) if k != name}


def _decode_without_seed(config: dict) -> dict:
    return {k: v for k, v in sorted(config.get("decode", {}).items()) if k != "seed"}


_TRAINING_SEED = re.compile(r"^(?P<name>.+)/seed(?P<seed>\d+)$")


def split_trainer(label: str | None) -> tuple[str, int | None]:
    """(trainer name, training seed) of a trainer label: `oput/seed3` -> ('oput', 3), `oput` -> ('oput', None)."""
    match = _TRAINING_SEED.match(label or "")
    return (match["name"], int(match["seed"])) if match else (label or "", None)


def plugin_label(plugin) -> str:
    """A decision plugin file as the report shows it: its file name (runs before identities: the path's name)."""
    return plugin.get("file", "?") if isinstance(plugin, dict) else str(plugin).rsplit("/", 1)[-1]


def _identity_rest(config: dict) -> dict:
    """Every field of the run key that the method tuple's first entries do not already hold, without the main
    threshold and the seeds: two runs that differ in any of them (precision, batch size, task content, plugin
    bytes, strategy code...) are different methods, never seeds of one."""
    rest = json.loads(json.dumps(config))  # a deep copy
    name = _threshold_name(config)
    for field in ("task", "strategy", "trainer", "model_hash", "plugins", "decode", "version", "params_set"):
        rest.pop(field, None)
    rest.get("params", {}).pop(name, None)
    return rest


def method_of(config: dict) -> tuple:
    """Hashable identity of a run's method: its whole configuration (the run key's fields) except tau and
    seed (decoding seed, and the training seed of a `NAME/seedK` trainer, whose checkpoint then stands for
    NAME's training recipe). Entries 0-7 are the fields the report reads by position; entry 8 is the rest."""
    trainer, training_seed = split_trainer(config.get("trainer"))
    model = f"training seeds of {trainer}" if training_seed is not None else config.get("model_hash")
    plugins = tuple(json.dumps(p, sort_keys=True) if isinstance(p, dict) else p for p in config.get("plugins", []))
    return (config.get("task"), config.get("strategy"), trainer, model,
            json.dumps(_other_params(config), sort_keys=True),
            plugins, json.dumps(_decode_without_seed(config), sort_keys=True),
            config.get("version"), json.dumps(_identity_rest(config), sort_keys=True))


@attrs.frozen(kw_only=True)
class CellResult:
    """One stored run as a grid cell, with its samples."""

    key: str
    config: dict = attrs.field(hash=False, eq=False)
    samples: tuple = attrs.field(hash=False, eq=False)

    @property
    def strategy(self) -> str:
        return self.config.get("strategy", "?")

    @property
    def trainer(self) -> str:
        """The trainer name (a `NAME/seedK` label's NAME), or the checkpoint hash when the run has none."""
        trainer = split_trainer(self.config.get("trainer"))[0]
        return trainer if trainer else f"model:{str(self.config.get('model_hash', ''))[:8]}"

    @property
    def training_seed(self) -> int | None:
        """K of a `NAME/seedK` trainer label; None for a model that is not one of several training seeds."""
        return split_trainer(self.config.get("trainer"))[1]

    @property
    def task(self) -> str:
        return self.config.get("task", "?")

    @property
    def tau(self) -> float | None:
        return tau_of(self.config)

    @property
    def seed(self) -> int:
        return int(self.config.get("decode", {}).get("seed", 0))

    @property
    def params(self) -> dict:
        """Parameters other than the main threshold."""
        return _other_params(self.config)

    @property
    def plugins(self) -> list[str]:
        """The decision plugin files, by name."""
        return [plugin_label(p) for p in self.config.get("plugins", [])]

    @property
    def method(self) -> tuple:
        return method_of(self.config)

    @property
    def group(self) -> tuple:
        """Identity of the cell up to its seed."""
        return self.method + (self.tau,)

    def base_label(self) -> str:
        label = f"{self.strategy} × {self.trainer}"
        if self.params:
            label += " " + ",".join(f"{k}={v}" for k, v in self.params.items())
        if self.plugins:
            label += " +" + "+".join(self.plugins)
        return label


def cells_from_store(store) -> list[CellResult]:
    """Every run of the store with at least one sample, oldest first."""
    return [CellResult(key=run.key, config=run.config, samples=tuple(store.samples(run.key)))
            for run in store.runs() if run.n_samples]


def _flat(value, prefix: str = "") -> dict[str, str]:
    """A nested config as dotted keys -> short JSON values (for telling methods apart in labels)."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in sorted(value.items()):
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and any(isinstance(v, dict) for v in value):  # e.g. plugin files: by position
        out = {}
        for i, v in enumerate(value):
            out.update(_flat(v, f"{prefix}.{i}" if prefix else str(i)))
        return out
    text = json.dumps(value, sort_keys=True)
    return {prefix: text if len(text) <= 24 else text[:8] + "…"}


def method_labels(cells: Iterable[CellResult]) -> dict[tuple, str]:
    """Readable, unique label per method: `strategy × trainer [params] [+plugins]`, plus, where methods would
    otherwise share a label, the task or else the fields of their configurations that differ (`[precision=
    "cpu/float64"]`, `[decode.cache="dual"]`, `[model_hash=…]`)."""
    by_method: dict[tuple, CellResult] = {}
    for c in cells:
        by_method.setdefault(c.method, c)
    labels = {m: c.base_label() for m, c in by_method.items()}
    for stage in ("task", "fields"):
        shared: dict[str, list[tuple]] = {}
        for m, label in labels.items():
            shared.setdefault(label, []).append(m)
        if all(len(ms) == 1 for ms in shared.values()):
            break
        for label, members in shared.items():
            if len(members) == 1:
                continue
            if stage == "task":
                for m in members:
                    labels[m] = f"{label} [{by_method[m].task}]" if len({by_method[x].task for x in members}) > 1 \
                        else label
                continue
            flats = {m: _flat(_identity_config(by_method[m].config)) for m in members}
            keys = sorted({k for f in flats.values() for k in f})
            common = {k: Counter(f.get(k, "–") for f in flats.values()).most_common(1)[0][0] for k in keys}
            for m in members:  # what sets this method apart from the most common value of each field
                own = sorted((f"{k}={flats[m].get(k, '–')}" for k in keys if flats[m].get(k, "–") != common[k]),
                             key=lambda text: text.endswith("=–"))  # fields it has before fields it lacks
                labels[m] = label + (" [" + ", ".join(own[:3]) + (", …" if len(own) > 3 else "") + "]" if own else "")
    counts = Counter(labels.values())
    return {m: label + (f" [{hashlib.sha256(repr(m).encode()).hexdigest()[:6]}]" if counts[label] > 1 else "")
            for m, label in labels.items()}


def _identity_config(config: dict) -> dict:
    """A run's configuration without what varies inside one method (tau, seeds)."""
    rest = json.loads(json.dumps(config))
    rest.get("params", {}).pop(_threshold_name(config), None)
    rest.get("params_set", {}).pop(_threshold_name(config), None)
    rest.get("decode", {}).pop("seed", None)
    if split_trainer(config.get("trainer"))[1] is not None:
        rest.pop("trainer", None)
        rest.pop("model_hash", None)
    return rest


def fmt_tau(tau: float | None) -> str:
    return "–" if tau is None or (isinstance(tau, float) and math.isnan(tau)) else f"{tau:g}"
