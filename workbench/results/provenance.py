"""What a run's samples depend on beyond its settings: the code that decided them and the data they came from.

`evaluate.RunSpec.config` (the run key of the results store) calls these, so that the store never hands one
configuration's samples to another:
- `strategy_identity(name)`: a builtin strategy's source (its module and the project modules it uses), or an
  entry-point strategy's distribution name, version and source;
- `plugin_file_identity(path)`: a `--plugin` file's bytes and the hooks it implements; a file whose plugins
  implement observer hooks only cannot change a sample, so it is left out of the key (`decision_files`);
- `canonical_params(name, params)`: the strategy's parameters as the built strategy holds them (defaults
  resolved, the `tau` alias mapped, numbers of the field's own type), so `{}` and `{"tau": 0.95}`, `1` and
  `1.0` are one run;
- `task_identity(task)`: the task's `identity()` (a JSONL file's sha256; a synthetic task's class and
  parameters), else its name.

An entry-point strategy's key also covers every Python file its distribution installs and every module of its
package (`distribution_hash`). Not covered: modules a `--plugin` file imports from beside it (only the file's
own bytes are hashed), modules a builtin strategy imports inside a function (`code_hash` follows module-level
names), the core's own code beyond the package version, and library versions (torch, transformers).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

# Top-level packages whose modules a builtin strategy's identity follows (its building blocks).
PROJECT_PACKAGES = ("strategies", "plugins")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _module_file(module: ModuleType) -> Path | None:
    path = getattr(module, "__file__", None)
    return Path(path) if path and Path(path).suffix == ".py" and Path(path).is_file() else None


def _uses(module: ModuleType, packages: tuple[str, ...]) -> set[str]:
    """Names of the modules under `packages` that `module` refers to (imported modules, imported objects)."""
    found = set()
    for value in vars(module).values():
        name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        if isinstance(name, str) and name.split(".")[0] in packages and name in sys.modules:
            found.add(name)
    return found


def code_hash(module: ModuleType, packages: tuple[str, ...]) -> str:
    """sha256 over the source files of `module` and of every module under `packages` it uses, transitively."""
    seen, todo = set(), [module.__name__]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(_uses(sys.modules[name], packages) - seen)
    h = hashlib.sha256()
    for name in sorted(seen):
        path = _module_file(sys.modules[name])
        h.update(name.encode() + b"\0" + (path.read_bytes() if path else b"<no source>") + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def strategy_identity(name: str) -> dict:
    """{"source": "builtin", "code"} or {"source": "entry point", "distribution", "version", "code"}.

    Computed once per process: the modules are imported once, so the bytes hashed at the first call are the
    code that runs (an edit takes effect, and changes the key, in the next process)."""
    from workbench.decoding.registry import BUILTIN_STRATEGIES, _entry_points, _load_strategy_module

    module = _load_strategy_module(name)
    if name in dict(BUILTIN_STRATEGIES):
        return {"source": "builtin", "code": code_hash(module, PROJECT_PACKAGES)}
    ep = _entry_points()[name]
    top = module.__name__.split(".")[0]
    return {"source": "entry point", "distribution": ep.dist.name if ep.dist else None,
            "version": ep.dist.version if ep.dist else None,
            "code": code_hash(module, (top,)), "files": distribution_hash(ep, sys.modules[top])}


def distribution_hash(ep, top: ModuleType) -> str:
    """sha256 over every Python file an entry point's distribution installs, and every module of its top-level
    package: a strategy package's other modules change its samples too, even when they are imported only
    inside a function. An editable install lists no files of its own, so the package folder is read."""
    files: set[Path] = set()
    if ep.dist is not None:
        for entry in ep.dist.files or ():
            path = Path(ep.dist.locate_file(entry))
            if path.suffix == ".py" and path.is_file():
                files.add(path.resolve())
    for root in getattr(top, "__path__", ()):  # a package (a single-module plugin is code_hash's alone)
        files.update(p.resolve() for p in Path(root).rglob("*.py"))
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _file_hooks(resolved: str, digest: str) -> tuple[str, ...]:
    """The hooks the plugins of the file with these bytes implement (each distinct content imported once)."""
    from workbench.decoding.registry import implemented_hooks, load_plugin_file

    hooks = set()
    for _, plugin in load_plugin_file(resolved):
        hooks.update(implemented_hooks(plugin))
    return tuple(sorted(hooks))


def plugin_file_identity(path: str | Path) -> dict:
    """{"file": its name, "sha256": of its bytes, "hooks": the hooks its plugins implement}."""
    path = Path(path)
    digest = sha256_file(path)
    return {"file": path.name, "sha256": digest, "hooks": list(_file_hooks(str(path.resolve()), digest))}


def is_observer_only(identity: dict) -> bool:
    """True for a plugin file whose plugins implement observer hooks only: it cannot change a sample."""
    from workbench.decoding.registry import DECISION_HOOKS

    return not set(identity["hooks"]) & set(DECISION_HOOKS)


def decision_files(paths) -> list[dict]:
    """Identities of the `--plugin` files that implement a decision hook (the ones in the run key)."""
    identities = [plugin_file_identity(p) for p in paths]
    return [i for i in identities if not is_observer_only(i)]


def observer_files(paths) -> list[str]:
    """Names of the `--plugin` files whose plugins only observe (not in the run key)."""
    return [i["file"] for i in map(plugin_file_identity, paths) if is_observer_only(i)]


# -- parameters ------------------------------------------------------------------------------------------


def _declared(field: attrs.Attribute) -> type | None:
    """float or int when the field is declared (or defaults to) a plain number, else None."""
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    for name, cls in (("float", float), ("int", int)):
        if kind == name or kind.startswith(f"{name} |") or kind.endswith(f"| {name}"):
            return cls
    default = field.default
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None
    return type(default)


def normalise(value: Any, kind: type | None = None) -> Any:
    """JSON data for a parameter value: numbers of the field's type (`1` and `1.0` alike for a float field),
    tuples as lists, enums by value, attrs objects as dicts, anything else by its repr."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        if kind is float:
            return float(value)
        if kind is int and float(value).is_integer():
            return int(value)
        return value
    if isinstance(value, enum.Enum):
        return normalise(value.value)
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if attrs.has(type(value)):
        return {f.name: normalise(getattr(value, f.name), _declared(f)) for f in attrs.fields(type(value))}
    return repr(value)


def canonical_params(name: str, params: dict) -> tuple[dict, dict, str | None]:
    """(every parameter as the built strategy holds it, the strategy's defaults, its main threshold's name).

    Raises the registry's StrategyParamError for a parameter the strategy does not take."""
    from workbench.decoding.registry import _load_strategy_module, _strategy_target, strategy_plugin

    target = _strategy_target(_load_strategy_module(name))
    main = getattr(target, "main_threshold", None)
    if not attrs.has(target):
        return {}, {}, main
    built = strategy_plugin(name, params)
    fields = [f for f in attrs.fields(target) if f.init]
    full = {f.name: normalise(getattr(built, f.name), _declared(f)) for f in fields}
    defaults = {}
    for f in fields:
        default = f.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory() if not default.takes_self else getattr(built, f.name)
        defaults[f.name] = None if default is attrs.NOTHING else normalise(default, _declared(f))
    return full, defaults, main


# -- tasks -----------------------------------------------------------------------------------------------


def task_identity(task: Any, name: str | None = None) -> dict:
    """The task's own `identity()` when it has one; else its class and name (what a task without one gets)."""
    own = getattr(task, "identity", None)
    if callable(own):
        return normalise(own())
    cls = type(task)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "name": getattr(task, "name", name)}


def task_identity_by_name(name: str) -> dict:
    """`task_identity` of the task `name` loads (`workbench.tasks.load_task`); {"name"} when it loads nothing
    (an lm-eval task, whose samples the harness checks itself)."""
    from workbench.tasks import load_task

    try:
        return task_identity(load_task(name), name)
    except (ValueError, OSError):
        return {"name": name}


__all__ = ["canonical_params", "code_hash", "decision_files", "distribution_hash", "is_observer_only", "normalise", "observer_files",
           "plugin_file_identity", "sha256_file", "strategy_identity", "task_identity", "task_identity_by_name"]
