"""What the registry knows without importing any plugin: the built-in strategies by name and module, the
entry-point group third-party strategies register under, and the registry's error and warning types.

Light on purpose (no torch, no pluggy): the command line checks a strategy name and reports a bad one before
anything heavy is imported.
"""

from __future__ import annotations

import importlib.metadata

ENTRY_POINT_GROUP = "workbench"

# Built-in strategies: (name, module). Explicit, so nothing is discovered by import side effects.
BUILTIN_STRATEGIES: tuple[tuple[str, str], ...] = (
    ("threshold", "strategies.threshold"),
    ("hierarchical", "strategies.hierarchical"),
    ("hard", "strategies.hard"),
    ("spd", "strategies.spd"),
    ("uniform-eb", "strategies.uniform_eb"),
    ("remdm", "strategies.remdm"),
    ("dream", "strategies.dream"),
    ("eb", "strategies.eb"),
    ("pc-sampler", "strategies.pc_sampler"),
    ("wino", "strategies.wino"),
    ("klass", "strategies.klass"),
    ("prophet", "strategies.prophet"),
    ("credit", "strategies.credit"),
    ("iter-smooth", "strategies.iter_smooth"),
    ("hierarchy-remask", "strategies.hierarchy_remask"),
    ("llada", "strategies.llada"),
)


class PluginError(ValueError):
    """Base class of the registry's user-facing errors."""


class UnknownStrategyError(PluginError):
    pass


class StrategyParamError(PluginError):
    pass


class PluginLoadError(PluginError):
    pass


class UnmarkedHookWarning(UserWarning):
    """A plugin method named like a hook lacks @hookimpl (pluggy ignores it)."""


class ShadowedHookWarning(UserWarning):
    """Two override plugins answer the same decision hook: the one asked second decides only where the first
    returns None."""


class PluginSkippedWarning(UserWarning):
    """An installed entry-point plugin that fails to import, skipped where it was not asked for."""


def strategy_names() -> list[str]:
    """Every strategy that can be asked for by name: the builtins in order, then installed entry points."""
    builtin = dict(BUILTIN_STRATEGIES)
    installed = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return list(builtin) + sorted(installed - set(builtin))
