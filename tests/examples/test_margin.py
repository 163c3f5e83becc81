"""Margin example plugin: top-1 minus top-2 threshold on hand-made distributions, validation, invariants."""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.authoring import checker
from workbench.decoding.registry import load_plugin_file

FILE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "margin.py"
((NAME, PLUGIN),) = load_plugin_file(FILE)
MarginThreshold = type(PLUGIN)

# Margins 0.05, 0.85, 0.0, 0.3; confidences 0.5, 0.9, 0.4, 0.6.
PROBS = [[[0, 0.5, 0.45, 0.05], [0, 0.9, 0.05, 0.05], [0, 0.4, 0.4, 0.2], [0, 0.6, 0.1, 0.3]]]


@pytest.mark.parametrize("tau,expected", [
    (0.8, [False, True, False, False]),
    (0.25, [False, True, False, True]),
    (0.0, [True, True, True, True]),
    (1.0, [False, True, False, False]),  # nothing passes: the largest margin alone
])
def test_threshold_on_the_margin(tau, expected):
    assert MarginThreshold(tau=tau).promote(checker.hand_state(probs=PROBS)).tolist() == [expected]


def test_margin_is_not_confidence():
    # Position 0 is the more confident (0.5 vs 0.45) but nearly tied with its runner-up (margin 0.02 vs 0.10).
    state = checker.hand_state(probs=[[[0, 0.5, 0.48, 0.02], [0, 0.45, 0.2, 0.35]]])
    assert MarginThreshold(tau=1.0).promote(state).tolist() == [[False, True]]


def test_only_open_mask_positions():
    state = checker.hand_state(probs=PROBS, is_mask=[[True, False, True, True]])
    assert MarginThreshold(tau=0.8).promote(state).tolist() == [[False, False, False, True]]
    done = checker.hand_state(probs=PROBS)
    done.done[:] = True
    assert not MarginThreshold(tau=0.0).promote(done).any()


@pytest.mark.parametrize("tau", [-0.1, 1.5, "0.5", True])
def test_tau_is_validated(tau):
    with pytest.raises(ValueError, match="tau"):
        MarginThreshold(tau=tau)


def test_passes_check_plugin_with_every_builtin_strategy():
    report = checker.check_target(FILE, examples=5)
    assert report.ok, report.text()
    assert PLUGIN.needs_probs
