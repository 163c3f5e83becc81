"""The module paths of release 0.2 (`workbench.loop`, `workbench.registry`, ...), kept importable for one
release: importing one gives the module at its new place and a `DeprecationWarning` naming it.

A meta-path finder answers only for the names in `MOVED`; the module object is the new one (not a copy), so
monkeypatching through either name changes the same module. Removed in the release after 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

_PACKAGES = {
    "decoding": "loop state hookspecs contract registry defaults rng cache limits",
    "results": "evaluate store provenance runlock metrics grid plots card",
    "training": "train distill",
    "runtime": "distributed placement",
    "authoring": "scaffold checker properties",
}
MOVED = {f"workbench.{name}": f"workbench.{package}.{name}"
         for package, names in _PACKAGES.items() for name in names.split()}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new} (for plugins: `from workbench import ...`, see "
                      f"docs/api.md); the old path goes away in the next release", DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module) -> None:
        pass  # the new module is already executed


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        return importlib.machinery.ModuleSpec(fullname, _Alias(new)) if new else None


def install_moved_module_aliases() -> None:
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
