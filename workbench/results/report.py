"""The ablation grid of a results store as data and as tables (`workbench report`, `ablate`, `plot`).

One row per cell, AUP per method, paired significance. A row is one cell (strategy x trainer x tau, with its other parameters); its seeds (decoding seeds, and the
training seeds of models labelled `NAME/seedK`, see `workbench.results.grid`) are aggregated as mean ± std. TPF counts
the prompt prefill inside block 1's first forward, TPF_total as a forward of its own (DMax, Fast-dLLM). Each row is compared with a reference cell on the same trainer and task (default: `threshold`
at its highest tau; `--reference STRATEGY[@TAU]`) on the samples both decoded: exact McNemar p marked
`*` (p < 0.05) or `**` (p < 0.01), and a paired bootstrap 95 % CI of the accuracy difference (markdown, json,
csv). AUP per method (strategy x trainer; its points are its tau cells, y_max = best accuracy of all methods
on the task) is ranked below the grid. Revisions (token positions changed after promotion) are shown for
cells whose samples carry them.

numpy, the store and the metrics are imported inside the functions that use them, so the command line reads
`FORMATS` and `DEFAULT_REFERENCE` (its choices) without them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict

import attrs

FORMATS = ("table", "markdown", "json", "csv", "pivot")
DEFAULT_REFERENCE = "threshold"


# -- building the report ----------------------------------------------------------------------------------------


@attrs.frozen
class _Paired:
    """A sample keyed by (seed, index), so several seeds pair up in one comparison."""

    index: tuple
    prompt: str
    correct: bool
    tokens: int
    nfe: int


def _paired_samples(cells: list[CellResult]) -> dict[tuple, _Paired]:
    """Samples keyed by (training seed, decoding seed, index): a row pairs with its reference on the same
    checkpoint and the same decoding seed."""
    return {(c.training_seed, c.seed, s.index): _Paired((c.training_seed, c.seed, s.index), s.prompt, s.correct,
                                                         s.tokens, s.nfe)
            for c in cells for s in c.samples}


def _parse_reference(text: str) -> tuple[str, float | None]:
    strategy, sep, tau = text.partition("@")
    if not strategy:
        raise ValueError(f"--reference {text!r}: write STRATEGY or STRATEGY@TAU, e.g. threshold@0.95")
    if not sep:
        return strategy, None
    try:
        return strategy, float(tau)
    except ValueError:
        raise ValueError(f"--reference {text!r}: {tau!r} is not a number") from None


def check_reference(reference: str, taus_by_strategy: dict[str, set]) -> None:
    """ValueError listing the valid choices when an explicit --reference names no cell (strategy -> its taus:
    what the store holds for `report`, the grid about to be decoded for `ablate`)."""
    from workbench.results.grid import fmt_tau

    strategy, tau = _parse_reference(reference)
    if strategy not in taus_by_strategy:
        raise ValueError(f"--reference {reference!r}: there is no {strategy!r} cell to compare with; choose one of "
                         f"{', '.join(taus_by_strategy)} (STRATEGY or STRATEGY@TAU)")
    taus = sorted((t for t in taus_by_strategy[strategy] if t is not None), reverse=True)
    if tau is not None and not any(abs(t - tau) < 1e-12 for t in taus):
        raise ValueError(f"--reference {reference!r}: {strategy} has no cell at tau {tau:g}; its taus: "
                         f"{', '.join(fmt_tau(t) for t in taus) or 'none'}")


def _mark(p: float | None) -> str:
    if p is None:
        return ""
    return "**" if p < 0.01 else "*" if p < 0.05 else ""


def _finite(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def build_report(cells: list[CellResult], reference: str = DEFAULT_REFERENCE) -> dict:
    """The grid as plain data (what `--format json` prints)."""
    import numpy as np
    from workbench.results.grid import fmt_tau, method_labels
    from workbench.results.metrics import (
        compare_paired, extras_summary, mean_std_over_seeds, revision_stats, summarize,
    )

    ref_strategy, ref_tau = _parse_reference(reference)
    labels = method_labels(cells)
    groups: dict[tuple, list[CellResult]] = defaultdict(list)
    for c in cells:
        groups[c.group].append(c)

    rows = []
    for key, members in groups.items():
        members.sort(key=lambda c: (-1 if c.training_seed is None else c.training_seed, c.seed))
        first = members[0]
        sums = [summarize(c.samples) for c in members]
        acc = mean_std_over_seeds([100 * s.accuracy for s in sums])
        tpf = mean_std_over_seeds([s.tpf for s in sums])
        tpf_total = mean_std_over_seeds([s.tpf_total for s in sums])
        tps = mean_std_over_seeds([s.tps for s in sums])
        nfe = mean_std_over_seeds([s.nfe for s in sums])
        revs = revision_stats(s for c in members for s in c.samples)
        # Samples nobody checked (an lm-eval run without check=): their `correct` means nothing, so the row has
        # no accuracy (shown "–", left out of AUP and significance) rather than a false 0 %.
        checked = all(s.extras.get("checked", True) for c in members for s in c.samples)
        if not checked:
            acc = (None, None)
        rows.append({
            "_key": key, "_cells": members, "_method": first.method,
            "task": first.task, "method": labels[first.method], "strategy": first.strategy,
            # What tells this method apart from others of the same label (`[precision="cpu/float64"]`), shown
            # with its parameters so that no two rows of the grid look alike.
            "distinct": labels[first.method][len(first.base_label()):].strip(),
            "trainer": first.trainer, "tau": first.tau, "params": first.params, "plugins": first.plugins,
            "seeds": sorted({c.seed for c in members}),
            "training_seeds": sorted({c.training_seed for c in members if c.training_seed is not None}),
            "n": sum(s.n for s in sums),
            "accuracy": acc[0], "accuracy_std": _finite(acc[1]), "tpf": tpf[0], "tpf_std": _finite(tpf[1]),
            "tps": _finite(tps[0]), "nfe": nfe[0],
            # The DMax / Fast-dLLM convention: the prompt prefill counted as a forward of its own.
            "tpf_total": tpf_total[0], "tpf_total_std": _finite(tpf_total[1]),
            "nfe_total": float(np.mean([s.nfe_total for s in sums])),
            "revisions": None if revs is None else revs.mean_revisions,
            "samples_revised": None if revs is None else revs.samples_revised,
            "revisions_fixed": None if revs is None else revs.fixed,
            "revisions_broke": None if revs is None else revs.broke,
            "extras": extras_summary(s for c in members for s in c.samples),  # observers' own values
            "runs": [c.key for c in members],
        })
    order = {}
    for r in rows:  # first appearance of task / trainer / strategy in the store, then tau descending
        for field in ("task", "trainer", "strategy"):
            order.setdefault((field, r[field]), len(order))
    rows.sort(key=lambda r: (order["task", r["task"]], order["trainer", r["trainer"]],
                             order["strategy", r["strategy"]], r["method"], -(r["tau"] if r["tau"] is not None else -1)))

    # Reference per row: same task, trainer and decode settings; the reference strategy at tau (or highest tau).
    for r in rows:
        first = r["_cells"][0]
        candidates = [q for q in rows if q["strategy"] == ref_strategy and q["task"] == r["task"]
                      and q["trainer"] == r["trainer"] and q["_method"][3] == first.method[3]
                      and q["_method"][6] == first.method[6]
                      and (ref_tau is None or (q["tau"] is not None and abs(q["tau"] - ref_tau) < 1e-12))]
        candidates.sort(key=lambda q: (_settings_differ(q["_cells"][0].config, first.config),
                                       bool(q["params"]) or bool(q["plugins"]),
                                       -(q["tau"] if q["tau"] is not None else -1)))
        r["reference"] = None
        r["is_reference"] = False
        r.update(p_value=None, mark="", accuracy_diff=None, accuracy_diff_ci=None, tpf_diff=None, paired_n=0)
        if not candidates or r["accuracy"] is None:
            continue
        ref = candidates[0]
        r["reference"] = f"{ref['method']} τ={fmt_tau(ref['tau'])}"
        if ref is r:
            r["is_reference"] = True
            continue
        if ref["accuracy"] is None:
            continue
        a, b = _paired_samples(r["_cells"]), _paired_samples(ref["_cells"])
        common = sorted(a.keys() & b.keys())
        if not common:
            continue
        cmp = compare_paired([a[i] for i in common], [b[i] for i in common])
        r.update(p_value=cmp.mcnemar_p, mark=_mark(cmp.mcnemar_p), paired_n=cmp.n,
                 accuracy_diff=100 * cmp.accuracy_diff[0],
                 accuracy_diff_ci=[100 * cmp.accuracy_diff[1], 100 * cmp.accuracy_diff[2]],
                 tpf_diff=cmp.tpf_diff[0])

    # AUP per method, per task: points = (mean TPF, mean accuracy %) of its tau cells.
    aups = []
    for task in dict.fromkeys(r["task"] for r in rows):
        curves: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for r in rows:
            if r["task"] == task and r["accuracy"] is not None:
                curves[r["method"]].append((r["tpf"], r["accuracy"]))
        values = task_aup(curves)
        for method in sorted(values, key=lambda m: -values[m]):
            members = [r for r in rows if r["task"] == task and r["method"] == method and r["accuracy"] is not None]
            r0 = members[0]
            aups.append({"task": task, "method": method, "strategy": r0["strategy"], "trainer": r0["trainer"],
                         "aup": values[method], "points": sorted(curves[method]), "fastest": fastest_kept(members)})
        for rank, entry in enumerate((e for e in aups if e["task"] == task), start=1):
            entry["rank"] = rank
    by_method = {(e["task"], e["method"]): e["aup"] for e in aups}
    for r in rows:
        r["aup"] = by_method.get((r["task"], r["method"]))
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return {"reference": reference, "cells": public, "aup": aups}


def fastest_kept(rows: list[dict]) -> dict:
    """A method's most parallel point that AUP keeps: the tau cell with the highest TPF among those within
    `AUP_DROP` accuracy points of its lowest-TPF cell (d3LLM's rule), as {tau, accuracy, tpf, tpf_total}. It is
    what the leaderboard shows beside the AUP: how fast the method goes without losing more than 5 points."""
    from workbench.results.metrics import AUP_DROP

    ordered = sorted(rows, key=lambda r: r["tpf"])
    floor = ordered[0]["accuracy"] - AUP_DROP
    best = max((r for r in ordered if r["accuracy"] >= floor), key=lambda r: r["tpf"])
    return {"tau": best["tau"], "accuracy": best["accuracy"], "tpf": best["tpf"], "tpf_total": best["tpf_total"]}


def task_aup(curves: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """`metrics.aup_by_method`, defined for the corner cases a random or tiny model produces: points with
    TPF 0 (no token generated) are left out, and when every accuracy is 0 (y_max = 0) every AUP is 0."""
    from workbench.results.metrics import aup_by_method

    usable = {m: [(x, y) for x, y in pts if x > 0] for m, pts in curves.items()}
    if not any(usable.values()) or max(y for pts in usable.values() for _, y in pts) <= 0:
        return {m: 0.0 for m in curves}
    values = aup_by_method({m: pts for m, pts in usable.items() if pts})
    return {m: values.get(m, 0.0) for m in curves}


# -- formatting -------------------------------------------------------------------------------------------------


def _pm(mean: float | None, std: float | None, digits: int) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _settings_differ(a: dict, b: dict) -> int:
    """How many decoding settings two runs differ in (a row's reference is sought among runs with the same)."""
    return sum(a.get(f) != b.get(f) for f in ("precision", "batch_size", "task_content", "chat_template"))


def _params_text(r: dict) -> str:
    parts = [f"{k}={v}" for k, v in r["params"].items()] + [f"+{p.rsplit('/', 1)[-1]}" for p in r["plugins"]]
    parts += [r["distinct"]] if r.get("distinct") else []
    return " ".join(parts) or "–"


def _vs_ref(r: dict) -> str:
    if r["is_reference"]:
        return "ref"
    if r["p_value"] is None:
        return "–"
    return f"p={r['p_value']:.3g}{r['mark']}"


def _ci(r: dict) -> str:
    if r["accuracy_diff"] is None:
        return "–"
    lo, hi = r["accuracy_diff_ci"]
    return f"{r['accuracy_diff']:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _columns(report: dict, with_ci: bool) -> tuple[list[str], list[list[str]]]:
    from workbench.results.grid import fmt_tau

    tasks = {r["task"] for r in report["cells"]}
    several_seeds = any(len(r["seeds"]) > 1 for r in report["cells"])
    training_seeds = any(r.get("training_seeds") for r in report["cells"])
    revisions = any(r["revisions"] is not None for r in report["cells"])
    head = (["task"] if len(tasks) > 1 else []) + ["strategy", "trainer", "tau", "params"] \
        + (["seeds"] if several_seeds else []) + (["train seeds"] if training_seeds else []) \
        + ["n", "accuracy %", "TPF", "TPF_total", "TPS", "NFE", "vs ref"] \
        + (["Δacc % [95% CI]"] if with_ci else []) + (["revisions", "fixed/broke"] if revisions else [])
    body = []
    for r in report["cells"]:
        row = ([r["task"]] if len(tasks) > 1 else []) + [r["strategy"], r["trainer"], fmt_tau(r["tau"]),
                                                          _params_text(r)]
        row += [",".join(map(str, r["seeds"]))] if several_seeds else []
        row += [",".join(map(str, r["training_seeds"])) or "–"] if training_seeds else []
        row += [str(r["n"]), _pm(r["accuracy"], r["accuracy_std"], 1), _pm(r["tpf"], r["tpf_std"], 2),
                _pm(r["tpf_total"], r["tpf_total_std"], 2),
                "–" if r["tps"] is None else f"{r['tps']:.1f}", f"{r['nfe']:.1f}", _vs_ref(r)]
        row += [_ci(r)] if with_ci else []
        if revisions:  # mean revisions per sample; samples whose answer revisions turned right / wrong
            row += ["–", "–"] if r["revisions"] is None else [
                f"{r['revisions']:.2f}", f"{r['revisions_fixed']}/{r['revisions_broke']}"]
        body.append(row)
    return head, body


def _aup_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    tasks = {e["task"] for e in report["aup"]}
    head = ["rank"] + (["task"] if len(tasks) > 1 else []) + [
        "method", "AUP", "fastest within 5 pts: acc % / TPF / TPF_total (tau)", "points (TPF, acc %)"]
    body = [[str(e["rank"])] + ([e["task"]] if len(tasks) > 1 else []) + [
        e["method"], f"{e['aup']:.2f}", _fastest_text(e["fastest"]),
        " ".join(f"({x:.2f}, {y:.1f})" for x, y in e["points"])]
        for e in report["aup"]]
    return head, body


def _fastest_text(point: dict) -> str:
    from workbench.results.grid import fmt_tau

    return f"{point['accuracy']:.1f} / {point['tpf']:.2f} / {point['tpf_total']:.2f} ({fmt_tau(point['tau'])})"


FOOTNOTE = ("vs ref: exact McNemar p against the reference cell on the same samples; * p < 0.05, ** p < 0.01. "
            "TPF = tokens / forwards with the prompt prefill fused into block 1's first forward; TPF_total counts "
            "the prefill as a forward of its own (DMax, Fast-dLLM). "
            "± = std over seeds (training seeds, with `train seeds`). "
            "AUP (on TPF): y_max = best accuracy among all methods on the task.")


def format_markdown(report: dict) -> str:
    def table(head, body):
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines)

    out = ["## Grid", "", table(*_columns(report, with_ci=True)), "", f"Reference: {report['reference']}. {FOOTNOTE}",
           "", "## AUP per method", "", table(*_aup_rows(report))]
    return "\n".join(out) + "\n"


def format_csv(report: dict) -> str:
    fields = ["task", "method", "strategy", "trainer", "tau", "params", "plugins", "seeds", "training_seeds", "n",
              "accuracy", "accuracy_std", "tpf", "tpf_std", "tpf_total", "tpf_total_std", "tps", "nfe", "nfe_total",
              "reference", "is_reference", "p_value", "mark",
              "accuracy_diff", "accuracy_diff_low", "accuracy_diff_high", "tpf_diff", "revisions", "revisions_fixed",
              "revisions_broke", "aup"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in report["cells"]:
        ci = r["accuracy_diff_ci"] or [None, None]
        row = {f: r.get(f) for f in fields}
        row.update(params=json.dumps(r["params"], sort_keys=True), plugins=";".join(r["plugins"]),
                   seeds=";".join(map(str, r["seeds"])), training_seeds=";".join(map(str, r["training_seeds"])),
                   accuracy_diff_low=ci[0], accuracy_diff_high=ci[1])
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def format_pivot(report: dict) -> str:
    """Markdown with one row per strategy x tau (and other parameters) and one column per trainer; a cell is
    `accuracy % / TPF / TPF_total`, each mean ± std where the cell has several seeds (lab/README.md's grids)."""
    from workbench.results.grid import fmt_tau

    trainers = list(dict.fromkeys(r["trainer"] for r in report["cells"]))
    several_tasks = len({r["task"] for r in report["cells"]}) > 1
    strategies = list(dict.fromkeys(r["strategy"] for r in report["cells"]))
    rows: dict[tuple, dict[str, dict]] = {}
    # Within a strategy: its defaults first, then variants by their parameters; tau descending.
    for r in sorted(report["cells"], key=lambda r: (r["task"], strategies.index(r["strategy"]),
                                                     _params_text(r) != "–", _params_text(r),
                                                     -(r["tau"] if r["tau"] is not None else -1))):
        rows.setdefault((r["task"], r["strategy"], _params_text(r), fmt_tau(r["tau"])), {})[r["trainer"]] = r

    def cell(r: dict | None) -> str:
        if r is None:
            return "–"
        return (f"{_pm(r['accuracy'], r['accuracy_std'], 1)} / {_pm(r['tpf'], r['tpf_std'], 2)} / "
                f"{_pm(r['tpf_total'], r['tpf_total_std'], 2)}")

    head = (["task"] if several_tasks else []) + ["strategy", "params", "tau"] + [
        f"{t}: acc % / TPF / TPF_total" for t in trainers]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for (task, strategy, params, tau), by_trainer in rows.items():
        row = ([task] if several_tasks else []) + [strategy, params, tau] + [cell(by_trainer.get(t)) for t in trainers]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines) + "\n"


def print_table(report: dict, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: do not cut the grid at 80 columns
            console = Console(width=max(console.width, 180))
    head, body = _columns(report, with_ci=False)
    grid = Table(title="ablation grid")
    for h in head:
        grid.add_column(h, justify="left" if h in ("task", "strategy", "trainer", "params") else "right")
    for row in body:  # labels hold `[field=value]`, which rich would read as markup and drop
        grid.add_row(*map(escape, row))
    console.print(grid)
    console.print(escape(f"reference: {report['reference']}. {FOOTNOTE}"))
    head, body = _aup_rows(report)
    ranking = Table(title="AUP per method (ranked)")
    for h in head:
        ranking.add_column(h, justify="right" if h in ("rank", "AUP") else "left")
    for row in body:
        ranking.add_row(*map(escape, row))
    console.print(ranking)


def render(report: dict, fmt: str) -> str | None:
    """The report as text in `fmt`; None for "table" (printed with rich)."""
    if fmt == "json":
        return json.dumps(report, indent=1, allow_nan=False, default=str)
    if fmt == "markdown":
        return format_markdown(report)
    if fmt == "csv":
        return format_csv(report)
    if fmt == "pivot":
        return format_pivot(report)
    return None


def show(cells: list[CellResult], fmt: str = "table", reference: str = DEFAULT_REFERENCE) -> None:
    report = build_report(cells, reference)
    text = render(report, fmt)
    if text is None:
        print_table(report)
    else:
        print(text, end="" if text.endswith("\n") else "\n")


def load_cells(path: str):
    """The cells of an existing results store, opened read-only (nothing is written, read-only media work);
    a missing or empty store is a user error."""
    from workbench.results.grid import cells_from_store
    from workbench.results.store import ResultsStore

    from pathlib import Path

    if Path(path).is_dir():
        raise ValueError(f"--store {path} is a folder; give the results store file in it (by default "
                         f"workbench-results.db)")
    if not Path(path).is_file():
        raise ValueError(f"results store {path} does not exist; run `workbench ablate` or `workbench run` first")
    with ResultsStore(path, readonly=True) as store:
        cells = cells_from_store(store)
    if not cells:
        raise ValueError(f"results store {path} holds no decoded samples yet")
    return cells
