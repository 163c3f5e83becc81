"""KL-stability example plugin: KL between consecutive forwards on hand-made distributions, validation,
invariants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from workbench.authoring import checker
from workbench.decoding.registry import load_plugin_file

FILE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "kl_stability.py"
((NAME, PLUGIN),) = load_plugin_file(FILE)
KLStability = type(PLUGIN)

STEP1 = [[[0, 0.9, 0.1, 0], [0, 0.6, 0.4, 0], [0, 0.8, 0.2, 0], [0, 0.3, 0.7, 0]]]
STEP2 = [[[0, 0.9, 0.1, 0], [0, 0.6, 0.4, 0], [0, 0.4, 0.6, 0], [0, 0.3, 0.7, 0]]]  # position 2 moved


def two_steps(plugin, first, second, *, block2=1):
    s1 = checker.hand_state(probs=first, step=1)
    p1 = plugin.promote(s1)
    s2 = checker.hand_state(probs=second, step=2)
    s2.stash, s2.block_index = s1.stash, block2
    return p1, plugin.promote(s2)


def test_first_forward_has_no_history_so_only_the_most_confident():
    first, _ = two_steps(KLStability(), STEP1, STEP2)
    assert first.tolist() == [[True, False, False, False]]


def test_stable_and_confident_positions_are_promoted():
    _, second = two_steps(KLStability(kl_threshold=0.01, tau=0.5), STEP1, STEP2)
    # 0: stable, 0.9; 1: stable, 0.6; 2: KL(0.4/0.6 || 0.8/0.2) ~ 0.38 > 0.01; 3: stable, 0.7.
    assert second.tolist() == [[True, True, False, True]]
    _, strict = two_steps(KLStability(kl_threshold=0.01, tau=0.65), STEP1, STEP2)
    assert strict.tolist() == [[True, False, False, True]]
    _, loose = two_steps(KLStability(kl_threshold=1.0, tau=0.5), STEP1, STEP2)
    assert loose.tolist() == [[True, True, True, True]]


def test_history_of_another_block_is_not_used():
    _, second = two_steps(KLStability(), STEP1, STEP1, block2=2)
    assert second.tolist() == [[True, False, False, False]]


def test_kl_helper():
    import sys

    import torch

    kl = sys.modules[KLStability.__module__].kl_divergence
    p, q = torch.tensor([[[0.5, 0.5]]]), torch.tensor([[[0.25, 0.75]]])
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert math.isclose(float(kl(p, q)), expected, rel_tol=1e-6)
    assert float(kl(p, torch.tensor([[[1.0, 0.0]]]))) == math.inf


@pytest.mark.parametrize("bad", [dict(kl_threshold=-1.0), dict(kl_threshold=math.nan), dict(tau=2.0)])
def test_parameters_are_validated(bad):
    with pytest.raises(ValueError):
        KLStability(**bad)


def test_passes_check_plugin_with_every_builtin_strategy():
    report = checker.check_target(FILE, examples=5)
    assert report.ok, report.text()
