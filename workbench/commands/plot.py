"""Draw the ablation held in a results store: accuracy-vs-TPF curves per method and the AUP bars (PNG and SVG).

A method is strategy x trainer (plus its other parameters); its points are its tau cells, seeds averaged,
exactly the numbers `workbench report` prints. One pair of figures per task.
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench.results.report import DEFAULT_REFERENCE, build_report, load_cells

HELP = "plot accuracy vs TPF per method and AUP bars from a results store"


def add_arguments(parser) -> None:
    parser.add_argument("--store", default="workbench-results.db", metavar="FILE", help="results store to read")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the PNG and SVG files")


def plot_report(report: dict, out: str | Path) -> list[Path]:
    """Write the figures of a `report.build_report` result; returns the paths written."""
    from workbench.results.plots import plot_accuracy_vs_tpf, plot_aup_bars

    tasks = list(dict.fromkeys(e["task"] for e in report["aup"]))
    written: list[Path] = []
    for task in tasks:
        suffix = "" if len(tasks) == 1 else "_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", task)
        entries = [e for e in report["aup"] if e["task"] == task]  # ranked, best first
        curves = {e["method"]: e["points"] for e in entries}
        written += plot_accuracy_vs_tpf(curves, out, title=f"Accuracy vs tokens per forward ({task})",
                                        stem=f"accuracy_vs_tpf{suffix}")
        written += plot_aup_bars({e["method"]: e["aup"] for e in entries}, out,
                                 title=f"AUP per method ({task})", stem=f"aup{suffix}")
    return written


def main(args) -> int:
    for path in plot_report(build_report(load_cells(args.store), DEFAULT_REFERENCE), args.out):
        print(path)
    return 0
