"""Metrics: AUP against hand arithmetic, McNemar against binomtest and a textbook example, bootstrap against
scipy.stats.bootstrap and the normal approximation."""

import math

import numpy as np
import pytest
from scipy import stats

from workbench.results.metrics import (
    aup,
    aup_by_method,
    aup_weight,
    compare_paired,
    mcnemar_exact,
    mean_std_over_seeds,
    paired_bootstrap,
    revision_stats,
    summarize,
)
from workbench.results.store import SampleRecord


def _sample(i, correct, nfe, tokens, seconds=1.0, extras=None, prompt=None):
    return SampleRecord(
        index=i, prompt=prompt or f"q{i}", output="o", expected="e", correct=correct, nfe=nfe, tokens=tokens,
        seconds=seconds, extras=extras or {},
    )


# --- summarize ------------------------------------------------------------------------------------------------


def test_summarize_hand_values():
    s = summarize([_sample(0, True, nfe=2, tokens=4, seconds=1.0), _sample(1, False, nfe=1, tokens=6, seconds=2.0)])
    assert s.n == 2
    assert s.accuracy == 0.5
    assert s.tpf == pytest.approx((4 / 2 + 6 / 1) / 2)  # 4.0: mean of per-sample TPF
    assert s.pooled_tpf == pytest.approx((4 + 6) / (2 + 1))  # 3.333: pooled totals
    assert s.tps == pytest.approx((4 / 1 + 6 / 2) / 2)  # 3.5
    assert s.nfe == 1.5 and s.tokens == 5.0


def test_summarize_both_nfe_conventions():
    # Sample 0 stored its nfe_total (a separate prefill forward and one more context forward); sample 1 is an
    # older record without the key: its prefill rode in block 1's first forward, so nfe_total = nfe + 1.
    s = summarize([_sample(0, True, nfe=2, tokens=4, extras={"nfe_total": 4}), _sample(1, True, nfe=1, tokens=6)])
    assert s.nfe_total == pytest.approx((4 + 2) / 2)
    assert s.tpf_total == pytest.approx((4 / 4 + 6 / 2) / 2)  # 2.0, against tpf 4.0
    assert s.tpf == pytest.approx((4 / 2 + 6 / 1) / 2)


def test_summarize_rejects_empty_and_zero_nfe_and_marks_missing_timing():
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError, match="nfe"):
        summarize([_sample(0, True, nfe=0, tokens=0)])
    assert math.isnan(summarize([_sample(0, True, nfe=1, tokens=1, seconds=0.0)]).tps)


# --- AUP ------------------------------------------------------------------------------------------------------


def test_aup_weight():
    assert aup_weight(80, 80) == 1.0
    assert aup_weight(90, 80) == 1.0  # clipped at 1 above y_max
    assert aup_weight(60, 90) == pytest.approx(math.exp(-3 * (1 - 60 / 90)))  # = e^-1


def test_aup_single_point_is_rho_times_y():
    # Unweighted even when y < y_max: the first term is rho_1 * y_1 (d3LLM reference code).
    assert aup([(2.5, 60.0)], y_max=90.0) == pytest.approx(2.5 * 60.0)  # 150


def test_aup_three_points_with_weight_below_one():
    # sorted: (1, 80), (2, 80), (3, 78); y_1 = 80, nothing below 75 so nothing dropped; y_max = 80
    # W(80) = 1; W(78) = exp(-3 (1 - 78/80)) = exp(-0.075) = 0.927743
    # AUP = 1*80 + (2-1)(80*1 + 80*1)/2 + (3-2)(78*0.927743 + 80*1)/2
    #     = 80 + 80 + (72.363992 + 80)/2 = 236.181996
    points = [(3.0, 78.0), (1.0, 80.0), (2.0, 80.0)]  # unsorted on purpose
    w78 = math.exp(-0.075)
    expected = 80 + 1 * (80 + 80) / 2 + 1 * (78 * w78 + 80) / 2
    assert expected == pytest.approx(236.181996, abs=1e-6)
    assert aup(points, y_max=80.0) == pytest.approx(expected, rel=1e-12)


def test_aup_drop_rule_filters_not_truncates():
    # sorted: (1, 80), (2, 76), (3, 74.9), (4, 77), (5, 70); y_1 = 80 -> drop y < 75: (3, 74.9), (5, 70)
    # kept: (1, 80), (2, 76), (4, 77); y_max = 80
    # W(76) = exp(-3 * 0.05) = exp(-0.15) = 0.860708; W(77) = exp(-3 * 0.0375) = exp(-0.1125) = 0.893597
    # AUP = 1*80 + (2-1)(76*0.860708 + 80)/2 + (4-2)(77*0.893597 + 76*0.860708)/2
    #     = 80 + (65.413806 + 80)/2 + 2 (68.806996 + 65.413806)/2
    #     = 80 + 72.706903 + 134.220802 = 286.927705
    points = [(5.0, 70.0), (3.0, 74.9), (1.0, 80.0), (4.0, 77.0), (2.0, 76.0)]
    w76, w77 = math.exp(-0.15), math.exp(-0.1125)
    expected = 80 + (76 * w76 + 80) / 2 + 2 * (77 * w77 + 76 * w76) / 2
    assert expected == pytest.approx(286.927705, abs=1e-6)
    assert aup(points, y_max=80.0) == pytest.approx(expected, rel=1e-12)


def test_aup_drop_boundary_is_kept_and_all_low_curve_is_weighted():
    # y = y_1 - 5 exactly is kept (only y_i < y_1 - 5 is dropped): (1, 80), (2, 75), y_max 80
    # AUP = 80 + (75 W(75) + 80)/2, W(75) = exp(-3 * 0.0625) = exp(-0.1875)
    assert aup([(1.0, 80.0), (2.0, 75.0)], 80.0) == pytest.approx(80 + (75 * math.exp(-0.1875) + 80) / 2)
    # flat curve far below y_max: W(60) = exp(-3 (1 - 60/90)) = e^-1
    # AUP = 1*60 + (2-1)(60 e^-1 + 60 e^-1)/2 = 60 + 60/e = 82.072766
    assert aup([(1.0, 60.0), (2.0, 60.0)], 90.0) == pytest.approx(82.072766, abs=1e-6)


def test_aup_by_method_uses_best_accuracy_over_all_methods():
    curves = {"a": [(1.0, 80.0), (2.0, 78.0)], "b": [(1.0, 60.0), (3.0, 50.0)]}
    got = aup_by_method(curves)
    # y_max = 80 (method a). b: y_1 = 60, (3, 50) < 55 dropped -> single point 1 * 60 = 60
    assert got["b"] == pytest.approx(60.0)
    # a: 80 + (2-1)(78 W(78) + 80)/2, W(78) = exp(-0.075)
    assert got["a"] == pytest.approx(80 + (78 * math.exp(-0.075) + 80) / 2)


def test_aup_rejects_bad_input():
    with pytest.raises(ValueError):
        aup([], 80.0)
    with pytest.raises(ValueError):
        aup([(0.0, 50.0)], 80.0)
    with pytest.raises(ValueError):
        aup([(1.0, 50.0)], 0.0)


# --- McNemar --------------------------------------------------------------------------------------------------


def _pairs(n11, b, c, n00):
    """Correctness vectors with n11 both right, b A-only right, c B-only right, n00 both wrong."""
    a = [True] * n11 + [True] * b + [False] * c + [False] * n00
    bb = [True] * n11 + [False] * b + [True] * c + [False] * n00
    return a, bb


def test_mcnemar_known_discordant_counts():
    a, b = _pairs(30, 10, 2, 8)
    got_b, got_c, p = mcnemar_exact(a, b)
    assert (got_b, got_c) == (10, 2)
    # two-sided exact: 2 * P(X >= 10 | n=12, 1/2) = 2 (C(12,10) + C(12,11) + C(12,12)) / 2^12 = 2 * 79 / 4096
    assert p == pytest.approx(158 / 4096, rel=1e-12)
    assert p == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue, rel=1e-12)
    # direction does not change p, swaps b and c
    assert mcnemar_exact(b, a) == (2, 10, pytest.approx(p))


def test_mcnemar_textbook_example():
    # Wikipedia "McNemar's test" example table: a=59, b=6, c=16, d=80 (n=161).
    # chi^2 = (6-16)^2 / 22 = 4.55, p = 0.033; exact two-sided p = 2 * sum_{k<=6} C(22,k) / 2^22
    # sum_{k=0..6} C(22,k) = 1+22+231+1540+7315+26334+74613 = 110056 -> p = 2 * 110056 / 4194304 = 0.05248
    a, b = _pairs(59, 6, 16, 80)
    assert mcnemar_exact(a, b) == (6, 16, pytest.approx(2 * 110056 / 4194304, rel=1e-12))


def test_mcnemar_no_discordant_pairs_and_length_check():
    assert mcnemar_exact([True, False], [True, False]) == (0, 0, 1.0)
    assert mcnemar_exact(*_pairs(0, 5, 5, 0))[2] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mcnemar_exact([True], [True, False])


# --- bootstrap ------------------------------------------------------------------------------------------------


def test_bootstrap_constant_difference_gives_degenerate_interval():
    a = np.arange(10.0)
    assert paired_bootstrap(a + 0.5, a) == pytest.approx((0.5, 0.5, 0.5))


def test_bootstrap_deterministic_by_seed():
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3) != paired_bootstrap(a, b, seed=4)


def test_bootstrap_matches_scipy_percentile_and_normal_approximation():
    rng = np.random.default_rng(0)
    n = 200
    a = rng.normal(1.0, 1.0, n)
    b = a - rng.normal(0.3, 0.5, n)  # paired: the difference has sd 0.5, not sqrt(1 + 1 + 0.25)
    mean, low, high = paired_bootstrap(a, b, n_resamples=5000, seed=0)
    d = a - b
    assert mean == pytest.approx(d.mean())
    ref = stats.bootstrap(
        (a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True, n_resamples=5000,
        method="percentile", confidence_level=0.95, random_state=np.random.default_rng(0),
    ).confidence_interval
    # Monte Carlo error of a 2.5 % quantile with 5000 resamples is ~0.0015 here (SE of the mean ~0.035)
    assert low == pytest.approx(ref.low, abs=0.01)
    assert high == pytest.approx(ref.high, abs=0.01)
    half = 1.959964 * d.std(ddof=1) / math.sqrt(n)
    assert low == pytest.approx(d.mean() - half, abs=0.01)
    assert high == pytest.approx(d.mean() + half, abs=0.01)
    assert low < 0.3 < high


def test_bootstrap_accuracy_interval_covers_and_narrows_with_confidence():
    a = [True] * 60 + [False] * 40
    b = [True] * 50 + [False] * 50
    mean, low, high = paired_bootstrap(a, b, confidence=0.95)
    assert mean == pytest.approx(0.10)
    assert low < 0.10 < high
    _, low80, high80 = paired_bootstrap(a, b, confidence=0.80)
    assert low <= low80 and high80 <= high


def test_compare_paired_aligns_by_index_and_refuses_mismatch():
    cell_a = [_sample(i, i % 2 == 0, nfe=2, tokens=8) for i in range(10)]
    cell_b = [_sample(i, i % 4 == 0, nfe=4, tokens=8) for i in reversed(range(10))]  # other order
    cmp = compare_paired(cell_a, cell_b, n_resamples=500)
    assert cmp.n == 10
    assert (cmp.mcnemar_b, cmp.mcnemar_c) == (2, 0)  # indices 2 and 6: A right, B wrong
    assert cmp.accuracy_diff[0] == pytest.approx(0.2)
    assert cmp.tpf_diff == pytest.approx((2.0, 2.0, 2.0))  # 8/2 - 8/4 on every sample
    with pytest.raises(ValueError, match="different samples"):
        compare_paired(cell_a, cell_b[1:])
    with pytest.raises(ValueError, match="prompts"):
        compare_paired(cell_a, [_sample(i, True, 1, 1, prompt="other") for i in range(10)])


# --- helpers --------------------------------------------------------------------------------------------------


def test_mean_std_over_seeds():
    assert mean_std_over_seeds([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))  # ddof=1
    mean, std = mean_std_over_seeds([4.0])
    assert mean == 4.0 and math.isnan(std)


def test_revision_stats():
    records = [
        _sample(0, True, 1, 1, extras={"revisions": 3, "fixed": True, "broke": False}),
        _sample(1, False, 1, 1, extras={"revisions": 0, "fixed": False, "broke": False}),
        _sample(2, False, 1, 1, extras={"revisions": 1, "broke": True}),
        _sample(3, True, 1, 1, extras={"other": 1}),  # no revision info: skipped
    ]
    r = revision_stats(records)
    assert (r.n, r.total_revisions, r.samples_revised, r.fixed, r.broke) == (3, 4, 2, 1, 1)
    assert r.mean_revisions == pytest.approx(4 / 3)
    assert revision_stats([_sample(0, True, 1, 1)]) is None
