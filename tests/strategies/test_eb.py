"""EB-Sampler (`eb`): the entropy bound on hand-computed steps, parity with the public EB-Sampler (golden
transcripts of PC-Sampler's `generate_with_eb_sampler`), the decoding invariants, and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transcripts import cases, check_case

from workbench import DecodeConfig, PluginError, generate, hand_state, make_manager
from workbench.authoring import checker
from workbench.cli import main as cli
from workbench.models.native import build_random_model

from strategies.eb import EntropyBounded, entropy

# Hand-made distributions over V = 6 (ids 0-2 special, mass on 3-5). Entropies in nats:
# A [1]: 0;  B [.5, .5]: ln 2 = 0.6931;  C [.9, .1]: 0.3251;  D [.25, .25, .5]: 1.0397.
# E [.6, .4]: 0.673 (conf .6, margin .2);  F [.55, .15, .3]: 0.975 (conf .55, margin .25).
DIST = {"A": [0, 0, 0, 1.0, 0, 0], "B": [0, 0, 0, 0.5, 0.5, 0], "C": [0, 0, 0, 0.9, 0.1, 0],
        "D": [0, 0, 0, 0.25, 0.25, 0.5], "E": [0, 0, 0, 0.6, 0.4, 0], "F": [0, 0, 0, 0.55, 0.15, 0.3]}
H = {"A": 0.0, "B": math.log(2), "C": -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)),
     "D": -(0.5 * math.log(0.25) + 0.5 * math.log(0.5))}


def state_of(rows, is_mask=None, top=None):
    """A hand state whose logits are log(probs) (what `promote` reads), for rows of DIST names."""
    probs = [[DIST[name] for name in row] for row in rows]
    state = hand_state(probs=probs, is_mask=is_mask, top=top)
    state.logits = torch.tensor(probs).log()  # log 0 = -inf: contributes 0 to the entropy
    return state


def promote(state, **params) -> list[list[bool]]:
    return EntropyBounded(**params).promote(state).positions.tolist()


def test_entropy_is_the_definition():
    ent = entropy(torch.tensor([[DIST[n] for n in "ABCD"]]).log())
    assert ent[0].tolist() == pytest.approx([H[n] for n in "ABCD"], abs=1e-6)


@pytest.mark.parametrize("gamma, expected", [
    # entropy order A, C, B, D; the bound's left side over each prefix: 0, 0 + 0 (A is below C's max),
    # H_A + H_C = 0.325, H_A + H_C + H_B = 1.018
    (0.0, [True, False, True, False]),
    (0.3, [True, False, True, False]),
    (0.4, [True, True, True, False]),   # 0.325 <= 0.4 admits B
    (1.0, [True, True, True, False]),   # 1.018 > 1.0 stops at D
    (1.1, [True, True, True, True]),
])
def test_the_papers_bound_on_a_hand_computed_step(gamma, expected):
    assert promote(state_of(["ABCD"]), gamma=gamma) == [expected]


def test_the_error_proxy_orders_the_prefix_the_bound_always_sums_entropies():
    state = state_of(["EFB"])
    # gamma 0.7 admits two of each order (left side 0, 0.673, 1.366):
    assert promote(state, gamma=0.7) == [[True, False, True]]  # entropy: E, B, F
    assert promote(state, gamma=0.7, proxy="confidence") == [[True, True, False]]  # E, F, B
    assert promote(state, gamma=0.7, proxy="margin") == [[True, True, False]]  # F, E, B
    assert promote(state, gamma=0.6, proxy="margin") == [[False, True, False]]  # F alone (0.673 > 0.6)


def test_only_open_positions_at_least_one_and_rows_apart():
    state = state_of(["ABCD", "DDDD"], is_mask=[[False, True, True, True], [True, True, True, True]])
    # row 1: A is decided; C, B (left side 0.693 - 0.693 + 0.325 = 0.325 <= 0.5), not D (1.018); row 2: one
    assert promote(state, gamma=0.5) == [[False, True, True, False], [True, False, False, False]]
    assert EntropyBounded().promote(state).fallback is False  # the set is never empty by itself


def test_mask_logit_keep_does_not_promote_a_mask_argmax():
    from workbench.authoring.properties import MASK_ID

    state = state_of(["ACB"], top=[[MASK_ID, 3, 3]])
    result = EntropyBounded(gamma=0.4, mask_logit="keep").promote(state)
    # the set is {A, C, B}; A's token is MASK: the reference writes MASK back, so it stays open
    assert result.positions.tolist() == [[False, True, True]] and result.fallback is False


def test_defaults_and_tau():
    eb = make_manager("eb").get_plugin("eb")
    assert (eb.gamma, eb.proxy, eb.mask_logit, eb.temperature) == (0.01, "entropy", "remove", 0.0)
    assert make_manager("eb", params={"tau": 0.5}).get_plugin("eb").gamma == 0.5  # --tau is the entropy budget
    assert make_manager("eb", params={"gamma": 3.0}).get_plugin("eb").gamma == 3.0  # not a probability


@pytest.mark.parametrize("bad", [dict(gamma=-0.1), dict(gamma=math.inf), dict(gamma="0.1"), dict(proxy="random"),
                                 dict(mask_logit="drop"), dict(temperature=-1.0)])
def test_parameters_are_validated(bad):
    with pytest.raises(PluginError):
        make_manager("eb", params=bad)


def test_two_samplers_are_refused():
    model = build_random_model(16, seed=0, hidden_size=16, num_layers=1, num_heads=2)
    with pytest.raises(Exception, match="both sample"):
        generate(model, [[5, 6]], make_manager("eb", params={"temperature": 0.5}),
                 DecodeConfig(block_size=4, max_new_tokens=4, temperature=0.5))


@pytest.mark.parametrize("transcript, case", cases("eb"))
def test_matches_the_public_eb_sampler(transcript, case):
    """Token for token and forward for forward with PC-Sampler's EB-Sampler (its authors published none),
    each prompt alone and all eight in one left-padded batch; the sampled case draws LLaDA's Gumbel noise
    from the per-sample streams."""
    check_case(transcript, case)


def test_the_transcript_depends_on_the_reference_switches():
    """The greedy case is not matched by accident: with the MASK logit removed (the default) it differs."""
    (transcript, case), = [p.values for p in cases("eb") if p.id.endswith(":gamma0.5")]
    changed = json.loads(json.dumps(case))
    changed["workbench"]["params"]["mask_logit"] = "remove"
    with pytest.raises(AssertionError):
        check_case(transcript, changed)


def test_passes_the_decoding_invariants_with_every_builtin_strategy():
    report = checker.check_target("eb", examples=3)
    assert report.ok, report.text()


def test_runs_from_the_command_line_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "eb", "--tau", "0.5", "--limit", "4", "--json", "--quiet",
                "--store", str(tmp_path / "r.db")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 4 and result["decisions"]["promote"] == "eb" and result["tokens"] > 0
