"""The README's one-screen leaderboard from `workbench report --format json`: one row per strategy, ranked by
AUP on the first trainer named, with each trainer's AUP and fastest point within 5 accuracy points.

    workbench report --store lb.db --format json > lb.json
    python lab/leaderboard.py lb.json --trainers oput,base
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def leaderboard(report: dict, trainers: list[str], task: str | None = None) -> str:
    """Markdown table: rank, strategy, then per trainer `AUP` and `acc % / TPF (tau)` of its fastest kept point."""
    rows = [r for r in report["aup"] if task is None or r["task"] == task]
    by = {(r["strategy"], r["trainer"]): r for r in rows}
    # ranked by AUP on the first trainer; ties (and strategies missing there) by name, so reruns print the same
    strategies = sorted({s for s, _ in by}, key=lambda s: (-(by.get((s, trainers[0])) or {"aup": -1})["aup"], s))
    head = ["rank", "strategy"] + [h for t in trainers for h in (f"AUP {t}", f"fastest within 5 pts, {t}")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, strategy in enumerate(strategies, 1):
        cells = [str(rank), f"`{strategy}`"]
        for t in trainers:
            r = by.get((strategy, t))
            if r is None:
                cells += ["-", "-"]
                continue
            f = r["fastest"]
            cells += [f"{r['aup']:.1f}", f"{f['accuracy']:.1f} / {f['tpf']:.2f} ({f['tau']:g})"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="`workbench report --format json` output")
    parser.add_argument("--trainers", default="oput,base", help="comma-separated; the first ranks (default %(default)s)")
    parser.add_argument("--task", default=None, help="only this task's rows")
    args = parser.parse_args()
    print(leaderboard(json.loads(args.report.read_text()), args.trainers.split(","), args.task))


if __name__ == "__main__":
    main()
