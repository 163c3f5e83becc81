"""Run the shipped decoding-invariant checks against a plugin combined with each built-in strategy.

FILE.py is a plugin file (what `--plugin` loads); NAME an installed strategy (entry point group
`workbench`). Every invariant x strategy cell is checked on small random problems drawn by hypothesis;
a failure is shrunk to a minimal example and printed with the error text. Exit code 1 when any cell
fails, 0 when all pass (cells that do not apply to a composition are shown as n/a).
"""

from __future__ import annotations

import json

from workbench.authoring.verdicts import BLOCKED, BUILTIN_NAMES, DEFAULT_EXAMPLES, FAIL, NA, PASS
from workbench.commands.common import add_quiet_argument, working

HELP = "check a plugin's decoding invariants with every built-in strategy (exit 1 on failure)"
STYLE = {PASS: "green", FAIL: "bold red", NA: "dim", BLOCKED: "yellow"}


def add_arguments(parser) -> None:
    parser.add_argument("target", metavar="FILE.py|NAME", help="plugin file, or name of an installed strategy")
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, metavar="N",
                        help=f"random problems per invariant and strategy (default {DEFAULT_EXAMPLES}; raise to search "
                             f"harder)")
    parser.add_argument("--strategies", default=",".join(BUILTIN_NAMES), metavar="A,B",
                        help="base strategies to combine the plugin with (default: every built-in)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    add_quiet_argument(parser)


def main(args) -> int:
    if args.examples <= 0:
        raise ValueError(f"--examples {args.examples}: give a positive number of problems")
    from workbench.authoring.checker import INVARIANTS, check_target

    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if args.json:
        report = check_target(args.target, strategies=strategies, examples=args.examples)
        print(json.dumps(report.to_dict()))
        return 0 if report.ok else 1

    from rich.console import Console
    from rich.table import Table

    console = Console()
    with working(f"checking {args.target} with {', '.join(strategies)} ({args.examples} examples per cell)", args):
        report = check_target(args.target, strategies=strategies, examples=args.examples)
    table = Table(title=f"check-plugin {args.target}: invariant x strategy")
    table.add_column("invariant")
    for s in report.strategies:
        table.add_column(s, justify="center")
    for inv in INVARIANTS:
        cells = [report.cell(inv.name, s) for s in report.strategies]
        table.add_row(inv.name, *[f"[{STYLE[c.status]}]{c.status}[/]" for c in cells])
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for inv in INVARIANTS:
        console.print(f"[dim]{inv.name}: {inv.summary}[/]", highlight=False)
    for strategy, providers in report.providers.items():
        console.print(f"[dim]{strategy}: " + " ".join(f"{h}={p}" for h, p in providers.items()) + "[/]")
    for c in report.failures:
        console.rule(f"[bold red]FAIL[/] {c.invariant} x {c.strategy}")
        if c.example:
            console.print("minimal failing example (hypothesis-shrunk):", highlight=False)
            console.print(c.example, highlight=False, markup=False)
        console.print(c.error or "", highlight=False, markup=False)
    if report.ok:
        console.print(f"[green]all invariants hold[/] ({args.examples} examples per cell; n/a = does not apply "
                      f"to that composition)")
        return 0
    console.print(f"[bold red]{len(report.failures)} failing cell(s)[/]: {', '.join(report.failing_invariants())}")
    return 1
