"""Plugin management: one fresh pluggy `PluginManager` per run, and the typed hook façade the loop calls.

Registration order of `make_manager` (later registered = asked first for a decision hook):

1. `CoreDefaults` (`trylast`, so always asked last),
2. the strategy: a builtin from `BUILTIN_STRATEGIES` or a third-party one from the entry-point group
   `workbench`, both a module exposing `STRATEGY` (an attrs class built from `params`) and registered
   through the same `register()`,
3. override plugins from `--plugin FILE.py` files, then `extra_plugins` objects.

Then `pm.check_pending()`, so a misspelt hook name fails loudly. Since the last registered implementation
of a firstresult hook silently wins, `decision_providers(pm)` says which plugin answers each decision
hook; every run summary prints it (`format_providers`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pluggy
import torch

import workbench
from workbench.decoding import contract, hookspecs
from workbench.decoding.catalog import (  # noqa: F401  (the names the registry knows without importing plugins)
    BUILTIN_STRATEGIES, ENTRY_POINT_GROUP, PluginError, PluginLoadError, PluginSkippedWarning, ShadowedHookWarning,
    StrategyParamError, UnknownStrategyError, UnmarkedHookWarning, strategy_names,
)
from workbench.decoding.defaults import DEFAULTS_NAME, CoreDefaults
from workbench.decoding.markers import (  # noqa: F401  (hookimpl and the hook names: the registry's vocabulary)
    ALL_HOOKS, DECISION_HOOKS, OBSERVER_HOOKS, OPT_IN_DECISIONS, OPTIONAL_DECISIONS, PROJECT, hookimpl,
)
from workbench.decoding.validators import unit_interval  # noqa: F401  (kept importable from here)


# -- discovery -------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StrategyInfo:
    """A strategy that `make_manager` can build."""

    name: str
    source: str  # "builtin" or "entry point (<distribution>)"
    module: str
    hooks: tuple[str, ...]
    version: str
    params: Mapping[str, Any]  # parameter -> default
    main_threshold: str | None


def implemented_hooks(plugin: object) -> tuple[str, ...]:
    """Hook names a plugin object (instance, class or module) implements, in spec order."""
    return tuple(h for h in ALL_HOOKS if getattr(getattr(plugin, h, None), f"{PROJECT}_impl", None) is not None)


def marked_names(plugin: object) -> list[str]:
    """Every attribute of a plugin marked with @hookimpl, hook name or not (a misspelt hook is one)."""
    return [n for n in dir(plugin) if not n.startswith("__")
            and getattr(getattr(plugin, n, None), f"{PROJECT}_impl", None) is not None]


def unmarked_hooks(plugin: object) -> list[str]:
    """Methods named like a hook but without @hookimpl: pluggy ignores them silently."""
    return [h for h in ALL_HOOKS if callable(getattr(plugin, h, None)) and h not in implemented_hooks(plugin)]


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, ALL_HOOKS, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_plugin_class(path: Path, cls: type) -> None:
    """PluginLoadError for a misspelt @hookimpl; a warning for hook-named methods without @hookimpl."""
    for name in marked_names(cls):
        if name not in ALL_HOOKS:
            raise PluginLoadError(f"plugin file {str(path)!r}: {cls.__name__}.{name} is marked @hookimpl but no hook "
                                  f"is called {name!r}{_suggest(name)} Hooks: {', '.join(ALL_HOOKS)}")
    missing = unmarked_hooks(cls)
    if missing and implemented_hooks(cls):  # a class with no marked hook at all is "no plugin" (an error)
        warnings.warn(f"plugin file {str(path)!r}: {cls.__name__} defines {', '.join(m + '()' for m in missing)} "
                      f"without @hookimpl, so the core never calls them; decorate them with @hookimpl "
                      f"(from workbench import hookimpl)", UnmarkedHookWarning, stacklevel=3)


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _distribution(ep: importlib.metadata.EntryPoint) -> str:
    """`name version` of the distribution that installed an entry point (what `pip uninstall` takes)."""
    return f"{ep.dist.name} {ep.dist.version}" if ep.dist else "an unknown distribution"


def _load_entry_point(name: str, ep: importlib.metadata.EntryPoint) -> Any:
    """ep.load(); PluginLoadError naming the distribution, the entry point and the import error."""
    try:
        return ep.load()
    except (Exception, SystemExit) as err:  # its own import failing (sys.exit() too): third-party code
        dist = ep.dist.name if ep.dist else "the distribution"
        raise PluginLoadError(
            f"strategy {name!r} (entry point {ep.value!r} of {_distribution(ep)}) fails to import: "
            f"{type(err).__name__}: {err}; fix that package or remove it (pip uninstall {dist})") from err


def _strategy_target(module: ModuleType) -> object:
    """What a strategy module provides: its `STRATEGY` class, or the module itself as a plugin."""
    return getattr(module, "STRATEGY", module)


def _info(name: str, module: ModuleType, source: str, version: str) -> StrategyInfo:
    target = _strategy_target(module)
    params = ({f.name: f.default for f in attrs.fields(target)} if attrs.has(target) else {})
    return StrategyInfo(name=name, source=source, module=module.__name__, hooks=implemented_hooks(target),
                        version=version, params=params, main_threshold=getattr(target, "main_threshold", None))


def available_strategies() -> list[StrategyInfo]:
    """Builtins first (in `BUILTIN_STRATEGIES` order), then entry points of the group `workbench`."""
    infos = [_info(name, importlib.import_module(mod), "builtin", workbench.__version__)
             for name, mod in BUILTIN_STRATEGIES]
    builtin = {name for name, _ in BUILTIN_STRATEGIES}
    for name, ep in sorted(_entry_points().items()):
        if name in builtin:
            continue  # a builtin name cannot be shadowed
        dist = ep.dist.name if ep.dist else "?"
        try:
            module = _load_entry_point(name, ep)
        except PluginLoadError as err:
            # One broken package must not take `list`, `report` or `ablate` down with it; asking for this
            # strategy by name (_load_strategy_module) still fails, with the same message.
            warnings.warn(f"skipping {err}", PluginSkippedWarning, stacklevel=1)  # one location: said once
            continue
        infos.append(_info(name, module, f"entry point ({dist})", ep.dist.version if ep.dist else "?"))
    return infos


def _load_strategy_module(name: str) -> ModuleType:
    builtin = dict(BUILTIN_STRATEGIES)
    if name in builtin:
        return importlib.import_module(builtin[name])
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownStrategyError(f"unknown strategy {name!r}; valid names: {', '.join(strategy_names())}")
    loaded = _load_entry_point(name, ep)
    if not isinstance(loaded, ModuleType):
        raise PluginLoadError(f"entry point {name!r} = {ep.value!r} must name a module (exposing STRATEGY "
                              f"or hook functions), not a {type(loaded).__name__}")
    return loaded


def strategy_threshold_param(name: str) -> str:
    """The parameter that `--tau` sets for strategy `name` (its `main_threshold`)."""
    target = _strategy_target(_load_strategy_module(name))
    main = getattr(target, "main_threshold", None)
    if main is None:
        raise StrategyParamError(f"strategy {name!r} has no main threshold, so --tau does not apply to it")
    return main


# The thresholds `workbench ablate` sweeps for a strategy that declares no `tau_grid` of its own.
DEFAULT_TAU_GRID = (0.95, 0.5, 0.0)


def strategy_tau_grid(name: str) -> tuple[float, ...]:
    """The values of its main knob that trace strategy `name`'s speed/quality curve: its class attribute
    `tau_grid` (ordered from careful to parallel), else `DEFAULT_TAU_GRID`."""
    strategy_threshold_param(name)  # a strategy without a main threshold has no grid
    grid = getattr(_strategy_target(_load_strategy_module(name)), "tau_grid", None)
    return tuple(float(t) for t in grid) if grid else DEFAULT_TAU_GRID


def _build_strategy(name: str, module: ModuleType, params: Mapping[str, Any]) -> object:
    target = _strategy_target(module)
    if not attrs.has(target):
        if params:
            raise StrategyParamError(f"strategy {name!r} takes no parameters, got {sorted(params)}")
        return target
    params = dict(params)
    main = getattr(target, "main_threshold", None)
    if "tau" in params and "tau" not in attrs.fields_dict(target) and main is not None:
        params[main] = params.pop("tau")  # the uniform `--tau` alias
    valid = list(attrs.fields_dict(target))
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise StrategyParamError(f"strategy {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                                 f"valid parameters: {', '.join(valid)}")
    try:
        return target(**params)
    except (TypeError, ValueError) as err:
        raise StrategyParamError(f"strategy {name!r}: {err}") from err


def strategy_plugin(name: str, params: Mapping[str, Any] | None = None) -> object:
    """The strategy object `make_manager` registers for `name` with `params` (validated, defaults filled in,
    the `tau` alias mapped); `workbench.results.provenance` reads its parameters from it for the run key."""
    return _build_strategy(name, _load_strategy_module(name), params or {})


# -- plugin files ----------------------------------------------------------------------------------------


def load_plugin_file(path: str | Path) -> list[tuple[str, object]]:
    """Import a `--plugin FILE.py` and return its plugins as (name, object).

    Looked up in this order: `PLUGINS` (a list of objects), `PLUGIN` (one object), `STRATEGY` (a class,
    built with its defaults), classes defined in the file with `@hookimpl` methods (built without
    arguments), else the module itself when it has `@hookimpl` functions.
    """
    path = Path(path)
    if path.is_dir():
        inner = path / f"{path.name}.py"
        hint = f" (the package's plugin is {str(inner)!r})" if inner.is_file() else ""
        raise PluginLoadError(f"plugin file {str(path)!r} is a directory: give the plugin's .py file{hint}")
    if not path.is_file():
        raise PluginLoadError(f"plugin file {str(path)!r} does not exist")
    mod_name = f"workbench_plugin_{path.stem}_{abs(hash(str(path.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"plugin file {str(path)!r} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # attrs and dataclasses resolve annotations through sys.modules
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[mod_name]
        raise PluginLoadError(f"plugin file {str(path)!r} failed to import: {type(err).__name__}: {err}") from err
    stem = path.stem
    own_classes = [obj for obj in vars(module).values() if inspect.isclass(obj) and obj.__module__ == mod_name]
    for cls in own_classes:
        _check_plugin_class(path, cls)
    if hasattr(module, "PLUGINS"):
        return [(f"{stem}.{type(p).__name__}", p) for p in module.PLUGINS]
    if hasattr(module, "PLUGIN"):
        return [(f"{stem}.{type(module.PLUGIN).__name__}", module.PLUGIN)]
    classes = [obj for obj in vars(module).values()
               if inspect.isclass(obj) and obj.__module__ == mod_name and implemented_hooks(obj)]
    if hasattr(module, "STRATEGY"):
        classes = [module.STRATEGY]
    if classes:
        try:
            return [(f"{stem}.{cls.__name__}", cls()) for cls in classes]
        except (TypeError, ValueError) as err:
            raise PluginLoadError(f"plugin file {str(path)!r}: cannot build its plugin with default "
                                  f"parameters ({err}); give every field a default or export PLUGIN = ...") from err
    if implemented_hooks(module):
        return [(stem, module)]
    unmarked = [f"{cls.__name__}.{h}" for cls in own_classes for h in unmarked_hooks(cls)]
    hint = (f"; {', '.join(unmarked)} look like hooks but lack @hookimpl" if unmarked else "")
    raise PluginLoadError(f"plugin file {str(path)!r} defines no plugin{hint}: add a class with @hookimpl methods "
                          f"(from workbench import hookimpl), or export PLUGIN = <object>")


# -- the manager -----------------------------------------------------------------------------------------


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def register(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Register one plugin (builtin, entry point, file or object alike); returns its unique name."""
    base = name or getattr(plugin, "name", None) or type(plugin).__name__
    if not isinstance(base, str):
        base = type(plugin).__name__
    unique, n = base, 1
    while pm.get_plugin(unique) is not None:
        n += 1
        unique = f"{base}#{n}"
    try:
        pm.register(plugin, name=unique)
    except pluggy.PluginValidationError as err:
        raise PluginLoadError(_validation_message(unique, plugin, err)) from None
    return unique


def _validation_message(name: str, plugin: object, err: pluggy.PluginValidationError) -> str:
    """One line for a hook implementation pluggy refuses: which plugin, file and hook, and what to write."""
    text = str(err)
    hook = next((h for h in ALL_HOOKS if f"hook '{h}'" in text), None)
    if hook is None:
        return f"plugin {name!r} cannot be registered: {' '.join(text.split())}"
    function = getattr(plugin, hook, None)
    where = getattr(getattr(function, "__code__", None), "co_filename", None)
    spec = tuple(inspect.signature(getattr(hookspecs, hook)).parameters)
    got = tuple(p for p in inspect.signature(function).parameters if p != "self") if function else ()
    return (f"plugin {name!r}{f' ({Path(where).name})' if where else ''}: its {hook}() takes "
            f"({', '.join(got)}), but the hook passes ({', '.join(spec)}); name the arguments exactly so "
            f"(pluggy passes them by name), e.g. `def {hook}(self, {', '.join(spec)}):`")


def make_manager(strategy: str, *, params: Mapping[str, Any] | None = None,
                 plugin_files: Iterable[str | Path] = (), extra_plugins: Iterable[object] = (),
                 named_plugins: Iterable[tuple[str, object]] = ()) -> pluggy.PluginManager:
    """A fresh plugin manager for one run: defaults, the strategy, then overrides (see module docstring)."""
    module = _load_strategy_module(strategy)
    strategy_plugin = _build_strategy(strategy, module, params or {})
    pm = new_plugin_manager()
    register(pm, CoreDefaults(), DEFAULTS_NAME)
    register(pm, strategy_plugin, strategy)
    overrides = []
    paths = [Path(p) for p in plugin_files]
    stems = [p.stem for p in paths]
    for path in paths:
        # Files of one name from different folders get their folder in the name, so summaries tell them apart.
        prefix = f"{path.resolve().parent.name}/" if stems.count(path.stem) > 1 else ""
        for name, plugin in load_plugin_file(path):
            overrides.append(register(pm, plugin, prefix + name))
    for name, plugin in named_plugins:  # already-loaded override plugins (check-plugin), in override order
        overrides.append(register(pm, plugin, name))
    for plugin in extra_plugins:
        overrides.append(register(pm, plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as err:
        raise PluginLoadError(f"plugin {err.plugin!r} implements a hook that does not exist: {err}. "
                              f"Valid hooks: {', '.join(ALL_HOOKS)}") from err
    _warn_shadowed(pm, set(overrides))
    return pm


def _warn_shadowed(pm: pluggy.PluginManager, overrides: set[str]) -> None:
    """A warning for each decision hook that several override plugins answer: pluggy asks the last registered
    first, and the others decide only where it returns None, which is easy to miss."""
    for hook in DECISION_HOOKS:
        plain = [i.plugin_name for i in reversed(getattr(pm.hook, hook).get_hookimpls())
                 if not (i.hookwrapper or i.wrapper) and i.plugin_name in overrides]
        if len(plain) > 1:
            warnings.warn(f"{hook} is answered by {plain[0]!r} (asked first); {', '.join(map(repr, plain[1:]))} "
                          f"{'is' if len(plain) == 2 else 'are'} asked only where it returns None. Pass only the "
                          f"plugin you mean, or compose them in one plugin", ShadowedHookWarning, stacklevel=3)


def _answering(pm: pluggy.PluginManager, hook: str) -> tuple[str, list[str]]:
    """(plugin asked first among plain implementations, wrappers around the call from outermost in)."""
    impls = list(reversed(getattr(pm.hook, hook).get_hookimpls()))  # pluggy's call order
    plain = [i.plugin_name for i in impls if not (i.hookwrapper or i.wrapper)]
    wrappers = [i.plugin_name for i in impls if i.hookwrapper or i.wrapper]
    return (plain[0] if plain else "<none>"), wrappers


def decision_providers(pm: pluggy.PluginManager) -> dict[str, str]:
    """Decision hook -> name of the plugin asked first (the last registered implementation, after
    tryfirst/trylast ordering), with the wrappers that see and may change its result: `spd [wrapped by
    timing.Timing]`. It answers unless it returns None for a step. An opt-in hook the core does not
    implement (`guidance`) is listed only when some plugin implements it."""
    out = {}
    for hook in DECISION_HOOKS:
        plugin, wrappers = _answering(pm, hook)
        if hook in OPT_IN_DECISIONS and plugin == "<none>" and not wrappers:
            continue  # nobody implements it: the run does not use it (and its key stays what it was)
        out[hook] = plugin + (f" [wrapped by {', '.join(wrappers)}]" if wrappers else "")
    return out


def format_providers(pm: pluggy.PluginManager) -> str:
    """One line for run summaries: the hooks a plugin answers, then those left to the core's defaults:
    `embed_state=spd promote=my_idea.Leftmost converge=spd commit=spd; core defaults: fill_block ...`."""
    from workbench.decoding.defaults import DEFAULTS_NAME

    providers = decision_providers(pm)
    chosen = " ".join(f"{hook}={name}" for hook, name in providers.items() if name != DEFAULTS_NAME)
    left = " ".join(hook for hook, name in providers.items() if name == DEFAULTS_NAME)
    return "; ".join(part for part in (chosen, f"core defaults: {left}" if left else "") if part)


# -- the typed façade the loop calls ---------------------------------------------------------------------


# Modules whose plugins the state guard trusts (the project's own code, tested not to write the state).
TRUSTED_MODULES = ("workbench.", "strategies.", "plugins.")
_PLAIN, _WRAPPER, _OLD_WRAPPER = 0, 1, 2


def _chain(pm: pluggy.PluginManager, hook: str) -> list[tuple]:
    """(plugin name, function, argnames, kind, trusted) per implementation, in pluggy's call order."""
    out = []
    for impl in reversed(getattr(pm.hook, hook).get_hookimpls()):
        kind = _OLD_WRAPPER if impl.hookwrapper else _WRAPPER if impl.wrapper else _PLAIN
        trusted = getattr(impl.function, "__module__", "").startswith(TRUSTED_MODULES)
        out.append((impl.plugin_name, impl.function, tuple(impl.argnames), kind, trusted))
    return out


class Hooks:
    """Typed calls of the hooks for one `generate` run, each decision result checked by `contract`.

    Hooks are dispatched here over the manager's implementations in pluggy's call order (last registered
    first, tryfirst/trylast respected; wrappers outermost; first non-None wins, exactly pluggy's firstresult
    rule), because pluggy says neither which implementation answered nor which one raised, and the errors
    must name it:
    - an exception inside an implementation becomes `contract.PluginRuntimeError` (plugin, hook, file:line,
      the original chained);
    - a contract error names the plugin that answered and every wrapper that changed its result;
    - with `guard(state)` set, each call of a plugin outside the project's own modules is followed by a
      check that it wrote no core state tensor (`contract.StateGuard`); in `on_generation_end`, that it
      changed nothing the core measured in the results (`contract.ResultsGuard`);
    - the embeddings, the forward's logits and the `process_logits` answer are checked finite (and the
      embeddings of a sane size) with one host sync per step (`contract.StepValues`).
    """

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.providers = decision_providers(pm)
        self._chains = {hook: _chain(pm, hook) for hook in ALL_HOOKS}
        plugins = pm.get_plugins()
        self.needs_probs = any(getattr(p, "needs_probs", False) for p in plugins)
        self.needs_logits = any(getattr(p, "needs_logits", False) for p in plugins)
        self._forward_needs = [(name, f) for name, p in pm.list_name_plugin()
                               if callable(f := getattr(p, "forwards_per_block", None))]
        # WINO's shadow block (`workbench.decoding.cache`): named plugins, for the error when it is unavailable.
        self.needs_shadow = ", ".join(sorted(repr(pm.get_name(p)) for p in plugins
                                             if getattr(p, "needs_shadow", False)))
        # The canvas view (`canvas_view = True`): plugins that read every generated position's logits and may
        # feed the positions after the block, where the forward computes them (workbench.decoding.loop).
        self.canvas_readers = [pm.get_name(p) for p in plugins if getattr(p, "canvas_view", False)]
        self._guard: contract.StateGuard | None = None
        self._values = contract.StepValues()  # the step's value checks, read in one host sync
        # Plugins seen drawing from torch's global generator (plugin -> first hook): their samples depend on
        # what else drew before them, so a rerun or another batch need not reproduce them.
        self.global_draws: dict[str, str] = {}

    def forward_cap(self, config, length: int) -> int:
        """The forward cap of a block of `length` positions: `--max-forwards` (`config.max_forwards_per_block`)
        when given, else the most any plugin declares it needs (`forwards_per_block(length)`: a fixed-schedule
        sampler's steps), else the block size (DMax's cap; a short last block keeps it)."""
        if config.max_forwards_per_block is not None:
            return config.max_forwards_per_block
        needs = []
        for name, declare in self._forward_needs:
            try:
                need = declare(length)
            except Exception as err:
                raise contract.PluginRuntimeError(plugin=name, hook="forwards_per_block", error=err,
                                                  where=contract.origin(err, declare)) from err
            if need is None:  # nothing to declare for this block
                continue
            if not isinstance(need, int) or isinstance(need, bool) or need < 1:
                raise contract.PluginContractError(
                    plugin=name, hook="forwards_per_block", rule="a positive number of forwards",
                    detail=f"returned {need!r}",
                    hint="return the int number of forwards a block of that length needs, or None")
            needs.append(need)
        return max(needs, default=config.block_size)  # a short last block keeps the full block's cap

    def guard(self, state) -> None:
        """Check every untrusted call against `state` from now on (one guard per block)."""
        self._guard = contract.StateGuard(state)

    def _call(self, hook: str, kwargs: dict[str, Any], firstresult: bool) -> tuple[Any, str, list[str]]:
        """(result, plugin that answered, wrappers that changed the result). Exceptions name the plugin."""
        guard = self._guard
        teardowns, result, answered = [], None, "<none>"
        try:
            for plugin, function, argnames, kind, trusted in self._chains[hook]:
                check = guard is not None and not trusted
                if check:
                    guard.snapshot()
                rng_before = None if trusted else torch.default_generator.get_state()
                try:
                    out = function(*[kwargs[a] for a in argnames])
                    if kind != _PLAIN:
                        next(out)  # the wrapper's code before its `yield`
                        teardowns.append((plugin, out, kind, function, check, trusted))
                except (contract.PluginContractError, contract.PluginRuntimeError, KeyboardInterrupt):
                    raise
                except Exception as err:
                    raise contract.PluginRuntimeError(plugin=plugin, hook=hook, error=err, builtin=trusted,
                                                      where=contract.origin(err, function)) from err
                if check:
                    guard.check(plugin, hook)
                if rng_before is not None and not torch.equal(rng_before, torch.default_generator.get_state()):
                    self.global_draws.setdefault(plugin, hook)
                if kind == _PLAIN and out is not None and firstresult:
                    result, answered = out, plugin
                    break
        except BaseException:
            for _, gen, *_ in teardowns:
                gen.close()
            raise
        changed = []
        for plugin, gen, kind, function, check, trusted in reversed(teardowns):
            before = result
            if check:
                guard.snapshot()
            try:
                if kind == _OLD_WRAPPER:
                    outcome = pluggy.Result(result, None)
                    try:
                        gen.send(outcome)
                    except StopIteration:
                        pass
                    result = outcome.get_result()
                else:
                    try:
                        gen.send(result)
                    except StopIteration as stop:
                        result = stop.value
                    else:
                        raise RuntimeError("the wrapper yielded twice; a wrapper yields exactly once")
            except (contract.PluginContractError, contract.PluginRuntimeError, KeyboardInterrupt):
                raise
            except Exception as err:
                raise contract.PluginRuntimeError(plugin=plugin, hook=hook, error=err, builtin=trusted,
                                                  where=contract.origin(err, function)) from err
            finally:
                gen.close()
            if check:
                guard.check(plugin, hook)
            if result is not before:
                changed.append(plugin)
        return result, answered, changed

    def _decide(self, hook: str, kwargs: dict[str, Any]) -> tuple[Any, str]:
        result, plugin, changed = self._call(hook, kwargs, firstresult=True)
        if changed:
            plugin = f"{plugin} [result changed by wrapper {', '.join(changed)}]"
        if result is None and hook not in OPTIONAL_DECISIONS:
            raise contract.PluginContractError(
                plugin=plugin, hook=hook, rule="some plugin answers", detail="every implementation returned None",
                hint="keep the core defaults registered (make_manager does) or return a result")
        return result, plugin

    def fill_block(self, state):
        result, plugin = self._decide("fill_block", {"state": state})
        return None if result is None else contract.check_fill_block(result, state, plugin)

    def guidance(self, state):
        """A checked `Guidance`, or None when no plugin guides this block."""
        result, plugin = self._decide("guidance", {"state": state})
        return None if result is None else contract.check_guidance(result, state, plugin)

    def embed_state(self, state, model):
        result, plugin = self._decide("embed_state", {"state": state, "model": model})
        table = model.embedding_table()
        self._values.embedded(result, table, plugin)  # its values are read with the step's logits
        return contract.check_embed_state(result, state, table, plugin)

    def process_logits(self, state, logits):
        self._values.forwarded(logits)  # before a plugin may change them in place: blame the right one
        result, plugin = self._decide("process_logits", {"state": state, "logits": logits})
        contract.check_process_logits(result, logits, plugin)
        self._values.check(result, plugin)
        return result

    def revoke(self, state):
        result, plugin = self._decide("revoke", {"state": state})
        return None if result is None else contract.check_revoke(result, state, plugin)

    def promote(self, state):
        """(positions (B, L) bool, tokens (B, L) long or None, fallback bool or (B,) bool)."""
        result, plugin = self._decide("promote", {"state": state})
        return contract.check_promote(result, state, plugin)

    def converge(self, state):
        result, plugin = self._decide("converge", {"state": state})
        return contract.check_converge(result, state, plugin)

    def commit(self, state):
        result, plugin = self._decide("commit", {"state": state})
        return contract.check_commit(result, state, plugin)

    def on_step_end(self, state) -> None:
        self._call("on_step_end", {"state": state}, firstresult=False)

    def on_block_end(self, state, committed) -> None:
        self._call("on_block_end", {"state": state, "committed": committed}, firstresult=False)

    def on_generation_end(self, results) -> None:
        self._guard = contract.ResultsGuard(results)  # observers outside the project may add extras only
        self._call("on_generation_end", {"results": results}, firstresult=False)
        self._guard = None
