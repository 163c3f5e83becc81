"""Metrics of a decoded run and comparisons between runs.

- `summarize`: accuracy, TPF (mean over samples and pooled), TPS, NFE and tokens of one run, and NFE / TPF
  with the prefill counted as its own forward (`nfe_total`, `tpf_total`: the DMax / Fast-dLLM convention).
- `aup`, `aup_by_method`: Accuracy Under Parallelism (d3LLM), exactly as docs/algorithms.md, "AUP".
- `mcnemar_exact`, `paired_bootstrap`, `compare_paired`: two cells decoded on the same samples.
- `mean_std_over_seeds`, `revision_stats`: aggregation helpers.

Everything takes plain numbers or objects with the attributes of `store.SampleRecord` (`index`, `prompt`,
`correct`, `nfe`, `tokens`, `seconds`, `extras`), so nothing here needs a store or a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
from scipy import stats

__all__ = [
    "extras_summary",
    "AUP_ALPHA",
    "AUP_DROP",
    "PairedComparison",
    "RevisionStats",
    "Summary",
    "aup",
    "aup_by_method",
    "aup_weight",
    "compare_paired",
    "mcnemar_exact",
    "mean_std_over_seeds",
    "nfe_total_of",
    "paired_bootstrap",
    "revision_stats",
    "summarize",
]

# d3LLM's constants: W(y) = min(exp(-AUP_ALPHA (1 - y / y_max)), 1); points more than AUP_DROP accuracy
# points below the accuracy at the lowest TPF are dropped.
AUP_ALPHA = 3.0
AUP_DROP = 5.0


# --- one run --------------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Summary:
    """Aggregate metrics of one run. `accuracy` is a fraction in [0, 1]; AUP takes percent (`accuracy * 100`)."""

    n: int
    accuracy: float
    tpf: float  # mean over samples of tokens / nfe (the reported TPF)
    pooled_tpf: float  # sum tokens / sum nfe
    tps: float  # mean over samples of tokens / seconds; NaN when some sample has no timing (seconds == 0)
    nfe: float  # mean NFE per sample
    tokens: float  # mean generated tokens per sample
    # The DMax / Fast-dLLM convention: the prompt prefill counted as a forward of its own (`nfe_total`), so
    # nfe_total = nfe + 1 with a fused prefill. tpf_total: mean over samples of tokens / nfe_total.
    nfe_total: float
    tpf_total: float


def nfe_total_of(sample: Any) -> int:
    """A sample's forwards with the prefill counted as its own forward: `extras["nfe_total"]` (stored by
    `workbench.results.evaluate`), else nfe + 1 (samples stored before the key existed had the prefill fused into
    block 1's first forward, the loop's only layout then)."""
    extras = getattr(sample, "extras", None) or {}
    return int(extras.get("nfe_total", sample.nfe + 1))


def summarize(samples: Iterable[Any]) -> Summary:
    """Summarise the samples of one run (objects with `correct`, `nfe`, `tokens`, `seconds`)."""
    samples = list(samples)
    if not samples:
        raise ValueError("summarize() needs at least one sample")
    correct = np.array([bool(s.correct) for s in samples], dtype=float)
    nfe = np.array([s.nfe for s in samples], dtype=float)
    tokens = np.array([s.tokens for s in samples], dtype=float)
    seconds = np.array([s.seconds for s in samples], dtype=float)
    if (nfe <= 0).any():
        bad = [getattr(s, "index", i) for i, s in enumerate(samples) if s.nfe <= 0]
        # Every generation runs at least one forward (the prefill), so NFE 0 is a counting bug upstream.
        raise ValueError(f"samples {bad[:10]} have nfe <= 0; NFE counts forwards, prefill included, so it is >= 1")
    tps = float(np.mean(tokens / seconds)) if (seconds > 0).all() else math.nan
    nfe_total = np.array([nfe_total_of(s) for s in samples], dtype=float)
    return Summary(
        n=len(samples),
        accuracy=float(correct.mean()),
        tpf=float(np.mean(tokens / nfe)),
        pooled_tpf=float(tokens.sum() / nfe.sum()),
        tps=tps,
        nfe=float(nfe.mean()),
        tokens=float(tokens.mean()),
        nfe_total=float(nfe_total.mean()),
        tpf_total=float(np.mean(tokens / nfe_total)),
    )


# --- AUP ------------------------------------------------------------------------------------------------------


def aup_weight(y: float, y_max: float, alpha: float = AUP_ALPHA) -> float:
    """W(y) = min(exp(-alpha (1 - y / y_max)), 1): 1 at or above y_max, decaying below it."""
    return min(math.exp(-alpha * (1.0 - y / y_max)), 1.0)


def aup(points: Sequence[tuple[float, float]], y_max: float) -> float:
    """Accuracy Under Parallelism of one method's (TPF, accuracy %) points.

    Sort by rho = TPF (stable, so ties keep their given order); y_1 = accuracy at the lowest TPF; drop points
    with y_i < y_1 - 5; then
        AUP = rho_1 y_1 + sum_{i>=2} (rho_i - rho_{i-1}) (y_i W(y_i) + y_{i-1} W(y_{i-1})) / 2.
    The first term is not weighted (as in d3LLM's reference code). A single point gives rho * y.
    `y_max` is the best accuracy (%) on the task among all methods compared (see `aup_by_method`).
    Unlike d3LLM's script, which asserts that no point is more than 5 points below y_1, points are dropped.
    """
    if not points:
        raise ValueError("aup() needs at least one (tpf, accuracy) point")
    if not y_max > 0:
        raise ValueError(f"y_max must be > 0 (best accuracy in percent), got {y_max!r}")
    pts = sorted(((float(r), float(y)) for r, y in points), key=lambda p: p[0])
    for rho, y in pts:
        if not (rho > 0 and math.isfinite(rho) and math.isfinite(y)):
            raise ValueError(f"AUP points need finite TPF > 0 and finite accuracy, got ({rho}, {y})")
    y_1 = pts[0][1]
    kept = [(rho, y) for rho, y in pts if y >= y_1 - AUP_DROP]
    total = kept[0][0] * kept[0][1]
    for (rho_prev, y_prev), (rho, y) in zip(kept, kept[1:]):
        total += (rho - rho_prev) * (y * aup_weight(y, y_max) + y_prev * aup_weight(y_prev, y_max)) / 2.0
    return total


def aup_by_method(curves: Mapping[str, Sequence[tuple[float, float]]]) -> dict[str, float]:
    """AUP of every method, with y_max = the best accuracy (%) among all points of all methods compared."""
    if not curves or not any(curves.values()):
        raise ValueError("aup_by_method() needs at least one method with points")
    y_max = max(float(y) for pts in curves.values() for _, y in pts)
    return {name: aup(pts, y_max) for name, pts in curves.items()}


# --- paired comparisons ---------------------------------------------------------------------------------------


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> tuple[int, int, float]:
    """Exact McNemar test of two cells on the same samples.

    Returns (b, c, p): b = samples A got right and B wrong, c = samples B got right and A wrong, p = two-sided
    exact binomial test of b successes in b + c trials at 1/2 (scipy.stats.binomtest); p = 1 when b + c = 0.
    """
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape or a.ndim != 1:
        raise ValueError(f"paired results need equal 1-D lengths, got {a.shape} and {bb.shape}")
    b = int(np.sum(a & ~bb))
    c = int(np.sum(~a & bb))
    if b + c == 0:
        return b, c, 1.0
    return b, c, float(stats.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


# Resamples are drawn in chunks so memory stays at _CHUNK x n indices whatever n_resamples is.
_BOOTSTRAP_CHUNK = 256


def paired_bootstrap(
    a_values: Sequence[float],
    b_values: Sequence[float],
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """Mean paired difference mean(a - b) with a percentile bootstrap confidence interval.

    Samples (pairs) are resampled with replacement, `n_resamples` times, from `np.random.default_rng(seed)`,
    so the result is deterministic. Percentile rather than BCa: BCa is undefined when every difference is equal
    (common for accuracy of two close strategies), the percentile interval is then exactly [d, d].
    Returns (diff_mean, low, high). Use on correctness (0/1) for accuracy, on tokens/nfe for TPF.
    """
    a = np.asarray(a_values, dtype=float)
    b = np.asarray(b_values, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired values need equal non-empty 1-D lengths, got {a.shape} and {b.shape}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    d = a - b
    n = d.size
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, _BOOTSTRAP_CHUNK):
        stop = min(start + _BOOTSTRAP_CHUNK, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(d.mean()), float(low), float(high)


@attrs.frozen(kw_only=True)
class PairedComparison:
    """Cell A versus cell B on the same n samples. Differences are A - B; accuracy as a fraction."""

    n: int
    accuracy_diff: tuple[float, float, float]  # (mean, low, high)
    tpf_diff: tuple[float, float, float]  # (mean, low, high), per-sample tokens / nfe
    mcnemar_b: int  # A right, B wrong
    mcnemar_c: int  # A wrong, B right
    mcnemar_p: float


def compare_paired(
    samples_a: Iterable[Any], samples_b: Iterable[Any], n_resamples: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> PairedComparison:
    """Pair two cells' samples by `index` and compare accuracy (McNemar + bootstrap) and TPF (bootstrap).

    Both cells must hold the same sample indices with the same prompts; otherwise the pairing would be
    meaningless and a ValueError says which indices differ.
    """
    by_a = {s.index: s for s in samples_a}
    by_b = {s.index: s for s in samples_b}
    if by_a.keys() != by_b.keys():
        only_a = sorted(by_a.keys() - by_b.keys())[:10]
        only_b = sorted(by_b.keys() - by_a.keys())[:10]
        raise ValueError(f"cells hold different samples: only in A {only_a}, only in B {only_b}")
    order = sorted(by_a)
    if not order:
        raise ValueError("compare_paired() needs at least one sample")
    differ = [i for i in order if getattr(by_a[i], "prompt", None) != getattr(by_b[i], "prompt", None)]
    if differ:
        raise ValueError(f"samples {differ[:10]} have different prompts in the two cells; they are not paired")
    ca = [bool(by_a[i].correct) for i in order]
    cb = [bool(by_b[i].correct) for i in order]
    b, c, p = mcnemar_exact(ca, cb)
    tpf_a = [by_a[i].tokens / by_a[i].nfe for i in order]
    tpf_b = [by_b[i].tokens / by_b[i].nfe for i in order]
    return PairedComparison(
        n=len(order),
        accuracy_diff=paired_bootstrap(ca, cb, n_resamples, seed, confidence),
        tpf_diff=paired_bootstrap(tpf_a, tpf_b, n_resamples, seed, confidence),
        mcnemar_b=b,
        mcnemar_c=c,
        mcnemar_p=p,
    )


# --- aggregation helpers --------------------------------------------------------------------------------------


def mean_std_over_seeds(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation with ddof=1) of one metric over seeds; std is NaN for a single seed."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size == 0:
        raise ValueError("mean_std_over_seeds() needs a non-empty 1-D sequence")
    std = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return float(v.mean()), std


@attrs.frozen(kw_only=True)
class RevisionStats:
    """Revision behaviour of a run, over the samples whose extras carry revision information.

    revisions: token positions whose value changed after promotion; fixed / broke: the sample's answer was
    turned right / wrong by revisions (as the recording plugin defines it).
    """

    n: int  # samples with revision information
    total_revisions: int
    mean_revisions: float
    samples_revised: int  # samples with at least one revision
    fixed: int
    broke: int


_REVISION_KEYS = ("revisions", "fixed", "broke")


def revision_stats(records: Iterable[Any]) -> RevisionStats | None:
    """Aggregate per-sample extras {"revisions": int, "fixed": bool, "broke": bool}.

    Samples without any of these keys are skipped; a sample with some keys counts missing ones as 0 / False.
    Returns None when no sample carries revision information (e.g. a strategy that never revises).
    """
    n = total = revised = fixed = broke = 0
    for r in records:
        extras = getattr(r, "extras", None) or {}
        if not any(k in extras for k in _REVISION_KEYS):
            continue
        revisions = int(extras.get("revisions", 0))
        if revisions < 0:
            raise ValueError(f"sample {getattr(r, 'index', '?')}: negative revision count {revisions}")
        n += 1
        total += revisions
        revised += revisions > 0
        fixed += bool(extras.get("fixed", False))
        broke += bool(extras.get("broke", False))
    if n == 0:
        return None
    return RevisionStats(
        n=n, total_revisions=total, mean_revisions=total / n, samples_revised=revised, fixed=fixed, broke=broke
    )


# Extras the core and the revision counter store for every sample; the rest are observers' own.
CORE_EXTRA_NAMES = ("block_steps", "nfe_total", "unfilled", "unrevised_ids", "checked") + _REVISION_KEYS


def extras_summary(records: Iterable[Any]) -> dict[str, dict]:
    """Observers' per-sample extras read back: for each name, how many samples carry it and, for numbers and
    booleans, their mean over those samples (`run --json`, `report --format json`)."""
    values: dict[str, list] = {}
    for r in records:
        for name, value in (getattr(r, "extras", None) or {}).items():
            if name not in CORE_EXTRA_NAMES:
                values.setdefault(name, []).append(value)
    out = {}
    for name, vals in sorted(values.items()):
        numbers = [float(v) for v in vals if isinstance(v, (int, float))]  # bools count as 0 / 1
        out[name] = {"samples": len(vals), "mean": (sum(numbers) / len(numbers)) if numbers else None}
    return out
