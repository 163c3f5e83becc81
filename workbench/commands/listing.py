"""List what is installed: strategies (with the hooks each implements), trainers, tasks, shipped models."""

from __future__ import annotations

from workbench.models.folders import DEFAULT_MODELS

HELP = "list strategies, trainers, tasks and shipped models"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true")


def main(args) -> int:
    from workbench.decoding.registry import StrategyParamError, available_strategies, strategy_tau_grid
    from workbench.tasks import available_tasks

    from trainers import TRAINERS

    strategies = available_strategies()

    def grid(name: str) -> list[float]:
        try:
            return list(strategy_tau_grid(name))
        except StrategyParamError:  # no main threshold: no grid
            return []

    shipped = sorted(p.name for p in DEFAULT_MODELS.iterdir() if (p / "config.json").is_file()) \
        if DEFAULT_MODELS.is_dir() else []
    if args.json:
        import json

        print(json.dumps({
            "strategies": [{"name": s.name, "source": s.source, "version": s.version, "hooks": list(s.hooks),
                            "tau": s.main_threshold, "tau_grid": grid(s.name)} for s in strategies],
            "trainers": sorted(TRAINERS), "tasks": available_tasks(), "models": shipped,
        }))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="strategies")
    for col in ("name", "source", "--tau sets", "ablate grid", "hooks"):
        table.add_column(col)
    for s in strategies:
        table.add_row(s.name, s.source if s.source == "builtin" else f"{s.source} {s.version}",
                      s.main_threshold or "–", ",".join(f"{t:g}" for t in grid(s.name)) or "–", ", ".join(s.hooks))
    console = Console()
    if not console.is_terminal:  # piped: do not squeeze the table into 80 columns
        console = Console(width=max(console.width, 140))
    console.print(table)
    console.print(f"trainers: {', '.join(sorted(TRAINERS))}")
    console.print(f"tasks: {', '.join(available_tasks())}")
    console.print(f"shipped models: {', '.join(shipped) or 'none'}")
    return 0
