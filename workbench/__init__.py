"""dLLM decoding workbench: one block-decoding loop, every strategy a pluggy plugin.

This module is the public API for plugin authors (docs/api.md lists every name with one line):

    from workbench import hookimpl, BlockState, Promotion, StashKey, FREE

Anything not exported here is internal and may move. The package reads top-down:

- `workbench.decoding`: the loop and the hook machinery (state, hook specifications, registry, contract,
  the core's defaults, random streams, forward runners and KV caches);
- `workbench.models`: the `Denoiser` protocol, the native model, transformers adapters, loading;
- `workbench.tasks`: tasks with exact checkers;
- `workbench.results`: decoding a split into the results store, metrics, grids, plots, model cards;
- `workbench.training`: the training loop and self-distillation data;
- `workbench.runtime`: processes (torchrun) and devices;
- `workbench.authoring`: scaffolding and checking plugins;
- `workbench.commands`, `workbench.cli`: the command line; `workbench.harness`: the lm-eval model.

Names are imported on first use (PEP 562), so `import workbench` (and `workbench --help`) loads neither
torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from workbench._moved import install_moved_module_aliases

__version__ = "0.2.0"

# Public name -> module that defines it. Order and grouping follow docs/api.md.
_EXPORTS = {
    # writing a plugin
    "hookimpl": "workbench.decoding.markers",
    "BlockState": "workbench.decoding.state",
    "Promotion": "workbench.decoding.state",
    "Guidance": "workbench.decoding.state",
    "StashKey": "workbench.decoding.state",
    "Stash": "workbench.decoding.state",
    "FREE": "workbench.decoding.state",
    "DecodeConfig": "workbench.decoding.state",
    "RowResult": "workbench.decoding.state",
    "Denoiser": "workbench.models.base",
    "ModelInputsDenied": "workbench.models.base",
    "noise_range": "workbench.models.base",
    "unit_interval": "workbench.decoding.validators",
    "non_negative": "workbench.decoding.validators",
    "positive_int": "workbench.decoding.validators",
    # running and testing one
    "make_manager": "workbench.decoding.registry",
    "load_plugin_file": "workbench.decoding.registry",
    "decision_providers": "workbench.decoding.registry",
    "generate": "workbench.decoding.loop",
    "hand_state": "workbench.authoring.checker",
    "CHECK_STRATEGIES": "workbench.authoring.checker:BUILTIN_NAMES",
    "check_plugins": "workbench.authoring.checker:check",
    "check_invariants": "workbench.authoring.properties:check_plugin",
    # errors a plugin meets
    "PluginError": "workbench.decoding.registry",
    "PluginContractError": "workbench.decoding.contract",
    "PluginRuntimeError": "workbench.decoding.contract",
    "UnsupportedSettings": "workbench.decoding.contract",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}; the public API is listed in "
                             f"docs/api.md (workbench.__all__)")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time the names load lazily
    from workbench.authoring.checker import BUILTIN_NAMES as CHECK_STRATEGIES  # noqa: F401
    from workbench.authoring.checker import check as check_plugins, hand_state  # noqa: F401
    from workbench.authoring.properties import check_plugin as check_invariants  # noqa: F401
    from workbench.decoding.contract import PluginContractError, PluginRuntimeError, UnsupportedSettings  # noqa: F401
    from workbench.decoding.loop import generate  # noqa: F401
    from workbench.decoding.markers import hookimpl  # noqa: F401
    from workbench.decoding.registry import PluginError, decision_providers, load_plugin_file, make_manager  # noqa: F401
    from workbench.decoding.state import (  # noqa: F401
        FREE, BlockState, DecodeConfig, Guidance, Promotion, RowResult, Stash, StashKey,
    )
    from workbench.decoding.validators import non_negative, positive_int, unit_interval  # noqa: F401
    from workbench.models.base import Denoiser, ModelInputsDenied, noise_range  # noqa: F401

install_moved_module_aliases()
