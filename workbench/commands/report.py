"""Print the ablation grid held in a results store: one row per cell, AUP per method, paired significance.

The grid, the statistics and the formats are `workbench.results.report`; this module is the command line.
"""

from __future__ import annotations

from workbench.results.report import DEFAULT_REFERENCE, FORMATS

HELP = "print the ablation grid of a results store: accuracy, TPF, AUP, significance"


def add_arguments(parser) -> None:
    parser.add_argument("--store", default="workbench-results.db", metavar="FILE", help="results store to read")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--reference", default=None, metavar="STRATEGY[@TAU]",
                        help="cell each row is compared with, on the same trainer and task "
                             "(default: threshold at its highest tau)")


def main(args) -> int:
    from workbench.results.report import check_reference, load_cells, show

    cells = load_cells(args.store)
    if args.reference is not None:  # an explicit reference must exist; the default may be absent
        taus: dict[str, set] = {}
        for c in cells:
            taus.setdefault(c.strategy, set()).add(c.tau)
        check_reference(args.reference, taus)
    show(cells, args.format, args.reference or DEFAULT_REFERENCE)
    return 0
