"""EB-sampler example plugin: the entropy bound on hand-made distributions, parameter validation, invariants."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from workbench.authoring import checker
from workbench.decoding.registry import load_plugin_file

FILE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "eb_sampler.py"
((NAME, PLUGIN),) = load_plugin_file(FILE)
EBSampler = type(PLUGIN)

# One row, four positions, V = 4 (id 0 unused). Entropies (nats): 0, ln 2 = 0.693, 0.325, 1.040;
# confidences 1, 0.5, 0.9, 0.5: confidence order 0, 2, 1, 3 (stable on the tie).
PROBS = [[[0, 1.0, 0, 0], [0, 0.5, 0.5, 0], [0, 0.9, 0.1, 0], [0, 0.25, 0.25, 0.5]]]


@pytest.mark.parametrize("gamma,expected", [
    (0.0, [True, False, True, False]),   # sum - max over {0, 2} = 0 + 0.325 - 0.325 = 0
    (0.1, [True, False, True, False]),   # adding 1: 1.018 - 0.693 = 0.325 > 0.1
    (0.5, [True, True, True, False]),    # adding 3: 2.058 - 1.040 = 1.018 > 0.5
    (2.0, [True, True, True, True]),
])
def test_promotes_the_longest_prefix_within_the_entropy_bound(gamma, expected):
    state = checker.hand_state(probs=PROBS)
    assert EBSampler(gamma=gamma).promote(state).tolist() == [expected]


def test_only_open_mask_positions_and_at_least_one():
    state = checker.hand_state(probs=PROBS, is_mask=[[False, True, True, True]])
    assert EBSampler(gamma=0.1).promote(state).tolist() == [[False, False, True, False]]
    state = checker.hand_state(probs=[[[0, 0.25, 0.25, 0.5]] * 3])  # every position uncertain
    assert EBSampler(gamma=0.0).promote(state).sum().item() == 1


def test_entropy_order_differs_from_confidence_order():
    # conf 0.6 / 0.55 / 0.5 with entropies 0.673 / 0.975 / 0.693: by confidence A, C; by entropy A, D.
    probs = [[[0, 0.6, 0.4, 0], [0, 0.55, 0.15, 0.3], [0, 0.5, 0.5, 0]]]
    state = checker.hand_state(probs=probs)
    assert EBSampler(gamma=0.7).promote(state).tolist() == [[True, True, False]]
    assert EBSampler(gamma=0.7, order="entropy").promote(state).tolist() == [[True, False, True]]


def test_entropy_helper_matches_the_definition():
    entropy = sys.modules[EBSampler.__module__].entropy
    p = torch.tensor([[[0.0, 0.5, 0.25, 0.25]]])  # 0 log 0 counts 0
    assert math.isclose(float(entropy(p)), 1.5 * math.log(2), rel_tol=1e-6)


@pytest.mark.parametrize("bad", [dict(gamma=-0.1), dict(gamma=math.inf), dict(gamma="0.1"), dict(order="random")])
def test_parameters_are_validated(bad):
    with pytest.raises(ValueError):
        EBSampler(**bad)


def test_passes_check_plugin_with_every_builtin_strategy():
    report = checker.check_target(FILE, examples=5)
    assert report.ok, report.text()
    assert all(p["promote"] == NAME for p in report.providers.values())
