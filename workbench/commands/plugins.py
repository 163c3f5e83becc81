"""List everything that can answer a hook: name, version, source and implemented hooks.

Sources: the core's defaults, built-in strategies, the reusable building blocks in `plugins/`, strategies
installed through the entry-point group `workbench` (with their distribution), and `--plugin FILE.py` files.
An entry point that fails to load is listed with its error instead of stopping the listing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import pkgutil

import attrs

import workbench

HELP = "list installed strategies and plugins with their versions, sources and hooks"


@attrs.frozen(kw_only=True)
class PluginRow:
    name: str
    version: str
    source: str
    hooks: tuple[str, ...]
    error: str | None = None


def add_arguments(parser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="also list the plugins of a plugin file (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON list")


def _target(module):
    return getattr(module, "STRATEGY", module)


def building_blocks() -> list[PluginRow]:
    """Plugin classes of the modules in the `plugins` package (each implements one or more hooks)."""
    from workbench.decoding.registry import implemented_hooks

    import plugins

    rows = []
    for info in sorted(pkgutil.iter_modules(plugins.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"plugins.{info.name}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and implemented_hooks(obj):
                rows.append(PluginRow(name=f"{info.name}.{name}", version=workbench.__version__,
                                      source="building block (plugins/)", hooks=implemented_hooks(obj)))
    return rows


def installed() -> list[PluginRow]:
    from workbench.decoding.registry import BUILTIN_STRATEGIES, ENTRY_POINT_GROUP, implemented_hooks

    from workbench.decoding.defaults import DEFAULTS_NAME, CoreDefaults

    version = workbench.__version__
    rows = [PluginRow(name=DEFAULTS_NAME, version=version, source="builtin (core defaults, trylast)",
                      hooks=implemented_hooks(CoreDefaults))]
    rows += [PluginRow(name=name, version=version, source="builtin strategy",
                       hooks=implemented_hooks(_target(importlib.import_module(module))))
             for name, module in BUILTIN_STRATEGIES]
    rows += building_blocks()
    builtin = {name for name, _ in BUILTIN_STRATEGIES}
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else "?"
        ver = ep.dist.version if ep.dist else "?"
        source = f"entry point ({dist}: {ep.value})"
        if ep.name in builtin:
            rows.append(PluginRow(name=ep.name, version=ver, source=source, hooks=(),
                                  error="shadows a builtin strategy name; ignored"))
            continue
        try:
            hooks = implemented_hooks(_target(ep.load()))
            rows.append(PluginRow(name=ep.name, version=ver, source=source, hooks=hooks))
        except (Exception, SystemExit) as err:  # a broken third-party package must not hide the others
            rows.append(PluginRow(name=ep.name, version=ver, source=source, hooks=(),
                                  error=f"cannot load: {type(err).__name__}: {err}"))
    return rows


def from_files(paths) -> list[PluginRow]:
    from workbench.decoding.registry import implemented_hooks, load_plugin_file

    rows = []
    for path in paths:
        for name, plugin in load_plugin_file(path):
            version = str(getattr(plugin, "__version__", None) or getattr(plugin, "version", None) or "-")
            rows.append(PluginRow(name=name, version=version, source=f"file ({path})", hooks=implemented_hooks(plugin)))
    return rows


def main(args) -> int:
    rows = installed() + from_files(args.plugin)
    if args.json:
        print(json.dumps([{**attrs.asdict(r), "hooks": list(r.hooks)} for r in rows]))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="plugins")
    for col in ("name", "version", "source", "hooks"):
        table.add_column(col, overflow="fold")  # never cut a name: users copy them
    for r in rows:
        table.add_row(r.name, r.version, r.source, f"[red]{r.error}[/]" if r.error else ", ".join(r.hooks))
    console = Console()
    console.print(table)
    console.print("[dim]combine any of them: workbench run --strategy spd --plugin FILE.py; "
                  "check one: workbench check-plugin FILE.py|NAME[/]")
    return 0
