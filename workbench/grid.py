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
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from workbench.registry import PluginError, strategy_names, strategy_threshold_param

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
            raise ValueError(f"--tau {item!r} is not a number; give thresholds in [0, 1], e.g. --tau 0.95,0.5,0") from None
        if not 0.0 <= tau <= 1.0:  # also rejects NaN
            raise ValueError(f"--tau {item} is outside [0, 1]; thresholds are probabilities")
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


def expand(strategies: Sequence[str], trainers: Sequence[str], taus: Sequence[float], seeds: Sequence[int]
           ) -> list[Cell]:
    """Every strategy x trainer x tau x seed, trainer outermost (one model in use at a time).

    Unknown strategies and strategies without a main threshold raise `PluginError` (one line, exit 2)."""
    known = strategy_names()
    for s in strategies:
        if s not in known:
            raise PluginError(f"unknown strategy {s!r} in --strategies; valid names: {', '.join(known)}")
        strategy_threshold_param(s)  # raises when --tau does not apply
    return [Cell(strategy=s, trainer=t, tau=tau, seed=seed)
            for t in trainers for s in strategies for tau in taus for seed in seeds]


# -- cells read back from stored runs ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _main_threshold(strategy: str) -> tuple[str | None, Any]:
    """(name, default) of a strategy's main threshold; (None, None) when unknown or absent."""
    try:
        name = strategy_threshold_param(strategy)
    except PluginError:
        return None, None
    from workbench.registry import available_strategies

    for info in available_strategies():
        if info.name == strategy:
            return name, info.params.get(name)
    return name, None


def tau_of(config: dict) -> float | None:
    """The main threshold of a stored run: its parameter, else the strategy's default."""
    name, default = _main_threshold(config.get("strategy", ""))
    if name is None:
        return None
    value = config.get("params", {}).get(name, default)
    return float(value) if isinstance(value, (int, float)) else None


def _other_params(config: dict) -> dict:
    name, _ = _main_threshold(config.get("strategy", ""))
    return {k: v for k, v in sorted(config.get("params", {}).items()) if k != name}


def _decode_without_seed(config: dict) -> dict:
    return {k: v for k, v in sorted(config.get("decode", {}).items()) if k != "seed"}


_TRAINING_SEED = re.compile(r"^(?P<name>.+)/seed(?P<seed>\d+)$")


def split_trainer(label: str | None) -> tuple[str, int | None]:
    """(trainer name, training seed) of a trainer label: `oput/seed3` -> ('oput', 3), `oput` -> ('oput', None)."""
    match = _TRAINING_SEED.match(label or "")
    return (match["name"], int(match["seed"])) if match else (label or "", None)


def method_of(config: dict) -> tuple:
    """Hashable identity of a run's method: all of its configuration except tau and seed (decoding seed, and
    the training seed of a `NAME/seedK` trainer, whose checkpoint then stands for NAME's training recipe)."""
    trainer, training_seed = split_trainer(config.get("trainer"))
    model = f"training seeds of {trainer}" if training_seed is not None else config.get("model_hash")
    return (config.get("task"), config.get("strategy"), trainer, model,
            json.dumps(_other_params(config), sort_keys=True),
            tuple(config.get("plugins", [])), json.dumps(_decode_without_seed(config), sort_keys=True),
            config.get("version"))


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
        return list(self.config.get("plugins", []))

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
            label += " +" + "+".join(p.rsplit("/", 1)[-1] for p in self.plugins)
        return label


def cells_from_store(store) -> list[CellResult]:
    """Every run of the store with at least one sample, oldest first."""
    return [CellResult(key=run.key, config=run.config, samples=tuple(store.samples(run.key)))
            for run in store.runs() if run.n_samples]


def method_labels(cells: Iterable[CellResult]) -> dict[tuple, str]:
    """Readable, unique label per method: `strategy × trainer [params] [+plugins]`, plus the decode settings
    or the task when methods would otherwise share a label."""
    by_method: dict[tuple, CellResult] = {}
    for c in cells:
        by_method.setdefault(c.method, c)
    labels = {m: c.base_label() for m, c in by_method.items()}
    for extra in (lambda c: f"[{c.task}]", lambda c: "[" + ",".join(
            f"{k}={v}" for k, v in _decode_without_seed(c.config).items() if v is not None) + "]",
                  lambda c: f"[{c.config.get('version')}]", lambda c: f"[{str(c.config.get('model_hash'))[:8]}]"):
        counts: dict[str, int] = {}
        for label in labels.values():
            counts[label] = counts.get(label, 0) + 1
        if all(n == 1 for n in counts.values()):
            break
        labels = {m: (label + " " + extra(by_method[m]) if counts[label] > 1 else label)
                  for m, label in labels.items()}
    return labels


def fmt_tau(tau: float | None) -> str:
    return "–" if tau is None or (isinstance(tau, float) and math.isnan(tau)) else f"{tau:g}"
