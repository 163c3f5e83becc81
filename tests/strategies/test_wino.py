"""WINO example plugin (revocation): the rules on hand-made distributions, then `run`, `check-plugin` and
`ablate` as a user runs them on the shipped base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from workbench.authoring import checker
from workbench.cli import main as cli
from workbench.decoding.loop import generate
from workbench.authoring.properties import ScriptedDenoiser
from workbench.decoding.registry import load_plugin_file, make_manager
from workbench.decoding.state import DecodeConfig

FILE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "wino.py"
((NAME, PLUGIN),) = load_plugin_file(FILE)
Wino = type(PLUGIN)

# Four positions; the first two are tokens (ids 1 and 2 at positions 0, 1), the last two open.
PROBS = [[[0, 0.95, 0.05, 0], [0, 0.3, 0.5, 0.2], [0, 0.7, 0.2, 0.1], [0, 0.4, 0.35, 0.25]]]


def state():
    s = checker.hand_state(probs=PROBS, is_mask=[[False, False, True, True]], vocab_size=4)
    s.ids = torch.tensor([[1, 2, 1, 1]])  # position 1 holds token 2, now at p = 0.5
    return s


def test_narrow_out_revokes_tokens_below_tau_out():
    assert Wino(tau_out=0.9).revoke(state()).tolist() == [[False, True, False, False]]
    assert Wino(tau_out=0.4).revoke(state()).tolist() == [[False, False, False, False]]


def test_wide_in_drafts_above_tau_in_and_skips_what_was_just_revoked():
    s = state()
    assert Wino(tau_in=0.6).promote(s).tolist() == [[False, False, True, False]]
    s.revoked = torch.tensor([[False, False, True, False]])
    assert Wino(tau_in=0.6).promote(s).tolist() == [[False, False, False, True]]  # the best of the rest


def test_revocation_happens_and_decodes_end_within_the_cap():
    # An unsure model: one draft per step, and a token rarely keeps p >= 0.9 at the next forward.
    model = ScriptedDenoiser(16, eos_bias=-50.0, scale=0.3, seed=2)
    pm = make_manager("threshold", extra_plugins=[PLUGIN])
    results = generate(model, [[5, 6], [7]], pm, DecodeConfig(block_size=4, max_new_tokens=8))
    tracer_pm = make_manager("threshold", extra_plugins=[PLUGIN])
    from plugins.tracer import RevisionCounter

    counter = RevisionCounter()
    tracer_pm.register(counter)
    again = generate(model, [[5, 6], [7]], tracer_pm, DecodeConfig(block_size=4, max_new_tokens=8))
    assert [r.ids for r in results] == [r.ids for r in again]
    seen = [r.extras.get("revocations", 0) for r in again]
    assert sum(seen) > 0, "a wide draft on a random model must lose some tokens"
    assert all(steps <= 4 for r in results for steps in r.block_steps)


def test_passes_check_plugin_with_every_builtin_strategy():
    report = checker.check_target(FILE, examples=5)
    assert report.ok, report.text()


def test_run_and_ablate_from_the_command_line(tmp_path, capsys):
    store = str(tmp_path / "r.db")
    assert cli(["run", "--strategy", "threshold", "--plugin", str(FILE), "--trainer", "base", "--limit", "40",
                "--store", store, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decisions"]["revoke"] == "wino.Wino" and result["decisions"]["promote"] == "wino.Wino"
    assert result["n"] == 40 and result["tpf"] > 0
    assert cli(["ablate", "--strategies", "threshold,hard", "--trainers", "base", "--tau", "0.9",
                "--plugin", str(FILE), "--limit", "20", "--store", store, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["cells"]) == 2 if "cells" in report else report


@pytest.mark.parametrize("bad", [dict(tau_in=1.5), dict(tau_out=-0.1)])
def test_thresholds_are_validated(bad):
    with pytest.raises(ValueError):
        Wino(**bad)
