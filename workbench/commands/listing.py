"""List what is installed: strategies (with the hooks each implements), trainers, tasks, shipped models."""

from __future__ import annotations

from workbench.models.folders import DEFAULT_MODELS

HELP = "list strategies, trainers, tasks and shipped models"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true")


def main(args) -> int:
    from workbench.decoding.registry import available_strategies
    from workbench.tasks import available_tasks

    from trainers import TRAINERS

    strategies = available_strategies()
    shipped = sorted(p.name for p in DEFAULT_MODELS.iterdir() if (p / "config.json").is_file()) \
        if DEFAULT_MODELS.is_dir() else []
    if args.json:
        import json

        print(json.dumps({
            "strategies": [{"name": s.name, "source": s.source, "version": s.version, "hooks": list(s.hooks)}
                           for s in strategies],
            "trainers": sorted(TRAINERS), "tasks": available_tasks(), "models": shipped,
        }))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="strategies")
    for col in ("name", "source", "version", "hooks"):
        table.add_column(col)
    for s in strategies:
        table.add_row(s.name, s.source, s.version, ", ".join(s.hooks))
    console = Console()
    console.print(table)
    console.print(f"trainers: {', '.join(sorted(TRAINERS))}")
    console.print(f"tasks: {', '.join(available_tasks())}")
    console.print(f"shipped models: {', '.join(shipped) or 'none'}")
    return 0
