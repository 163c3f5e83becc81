"""LLaDA's own sampler (`llada`): golden transcripts of ML-GSAI/LLaDA's `generate`, its rules on hand-computed
steps, the decoding invariants, and one run from the command line."""

from __future__ import annotations

import json
from types import SimpleNamespace

import attrs
import pytest
import torch

from transcripts import cases, check_case
from workbench.authoring import properties as P
from workbench.authoring.properties import MASK_ID, ScriptedDenoiser, make_block_state
from workbench.cli import main as cli
from workbench.decoding.loop import generate
from workbench.decoding.registry import PluginError, make_manager
from workbench.decoding.rng import RowRandom, sample_seed
from workbench.decoding.state import DecodeConfig

from strategies.llada import transfer_counts

EOS, EOT = P.EOS_ID, 3


@pytest.mark.parametrize("transcript, case", cases("llada"))
def test_transcript(transcript, case):
    """Each prompt alone and all 8 in one batch give upstream's ids and forward counts (divergences listed
    in the transcript with their cause: masks upstream reopens in later blocks, and its one-stream batch)."""
    torch.set_num_threads(1)
    check_case(transcript, case)


def plugin(**params):
    return make_manager("llada", params=params).get_plugin("llada")


def hand(logits, *, prompt=(4, 5), step=1, max_new_tokens=None, mode="sample", seed=0):
    """A block state (one row) whose processed logits are `logits` (L, V), decoding after `prompt`."""
    logits = torch.as_tensor(logits, dtype=torch.float32)[None]  # (1, L, V)
    length, vocab = logits.shape[1:]
    state = make_block_state(logits.softmax(-1).max(-1).values, vocab_size=vocab)
    state.config = DecodeConfig(block_size=length, max_new_tokens=max_new_tokens or length)
    state.logits, state.step = logits, step
    state.context = torch.tensor([list(prompt)])
    state.context_valid = torch.ones_like(state.context, dtype=torch.bool)
    state.rng = RowRandom(mode, seed, "cpu").bind(torch.tensor([0]))
    state.model = SimpleNamespace(eos_id=EOS)
    return state


def log_probs(rows):
    """Logits whose softmax is the given probabilities (rows of a (L, V) table, each summing to 1)."""
    return torch.tensor(rows, dtype=torch.float64).log().float()


# Vocabulary of 8: 0 pad, 1 MASK, 2 EOS, 3 "EoT", 4..7 tokens. Position confidences: 0.4 (token 5),
# 0.7 (MASK), 0.6 (token 6), 0.5 (EOS).
TABLE = [[0.1, 0.1, 0.1, 0.1, 0.1, 0.4, 0.05, 0.05],
         [0.05, 0.7, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025],
         [0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.6, 0.1],
         [0.1, 0.05, 0.5, 0.15, 0.05, 0.05, 0.05, 0.05]]


def test_transfer_schedule_is_get_num_transfer_tokens():
    assert transfer_counts(torch.tensor([8, 5, 3]), 3).tolist() == [[3, 3, 2], [2, 2, 1], [1, 1, 1]]
    assert transfer_counts(torch.tensor([3]), 5).tolist() == [[1, 1, 1, 0, 0]]  # later steps transfer nothing


def test_a_mask_pick_uses_a_transfer_slot_but_stays_open():
    """Step 1 of 2 on a block of 4: k = 2, the two most confident are the MASK argmax (0.7) and token 6
    (0.6): only token 6 is promoted (upstream writes MASK at the other, which leaves it masked)."""
    promotion = plugin(steps_per_token=0.5, mask_logit="keep").promote(hand(log_probs(TABLE)))
    assert promotion.positions.tolist() == [[False, False, True, False]]
    assert promotion.tokens[0, 2] == 6 and promotion.fallback is False
    # The default, the workbench's rule (MASK never predicted): position 1's best real token has 0.05 / 0.3.
    remove, state = plugin(steps_per_token=0.5, mask_logit="remove"), hand(log_probs(TABLE))
    state.logits = remove.process_logits(state, state.logits.clone())  # MASK's logit -> -inf
    promotion = remove.promote(state)
    assert promotion.positions.tolist() == [[False, False, True, True]]  # 0.6 / 0.95 and 0.5 / 0.95


def test_confidence_eos_eot_inf_greedy_zeroes_eos_and_eot():
    """Greedy, k = 2: plainly token 6 (0.6) and EOS (0.5) are promoted. With the switch EOS and EoT leave the
    softmax after the argmax: the EOS position scores 0, token 5 0.4 / (1 - 0.1 - 0.1) = 0.5 and token 7
    0.3 / 0.8, so token 6 (0.6 / 0.9) and token 5 are promoted."""
    table = [TABLE[0], [0.1, 0.05, 0.1, 0.1, 0.1, 0.1, 0.15, 0.3], TABLE[2], TABLE[3]]
    state = hand(log_probs(table))
    plain = plugin(steps_per_token=0.5).promote(state)
    assert plain.positions.tolist() == [[False, False, True, True]]
    got = plugin(steps_per_token=0.5, confidence_eos_eot_inf=True, eot_id=EOT).promote(state)
    assert got.positions.tolist() == [[True, False, True, False]]


def test_confidence_eos_eot_inf_with_a_temperature_removes_only_eot():
    """Upstream's chained assignment writes EOS's -inf into the noisy float64 copy: with T > 0 only EoT
    leaves the softmax the confidence is read from (a known quirk, kept)."""
    table = [row[:] for row in TABLE]
    table[3] = [0.02, 0.02, 0.02, 0.9, 0.01, 0.01, 0.01, 0.01]  # position 3 predicts EoT at 0.9
    cold = dict(temperature=1e-6, confidence_eos_eot_inf=True, eot_id=EOT, mask_logit="keep")  # k = 1
    state = hand(log_probs(table))
    got = plugin(**cold).promote(state)
    # k = 1: at T = 1e-6 the Gumbel argmax is the argmax; EoT (0.9) scores 0, the MASK argmax (0.7) wins.
    assert got.positions.tolist() == [[False, False, False, False]]
    table[3] = [0.02, 0.02, 0.9, 0.02, 0.01, 0.01, 0.01, 0.01]  # now EOS at 0.9: it keeps its confidence
    got = plugin(**cold).promote(hand(log_probs(table)))
    assert got.positions.tolist() == [[False, False, False, True]] and got.tokens[0, 3] == EOS


def test_gumbel_draw_covers_the_rows_whole_canvas_in_float64():
    """x0 = argmax exp(l) / (-log u)^T with u drawn (1, P + G, V) float64 from the sample's generator, the
    block's slice read at offset P + start (upstream's `add_gumbel_noise` on its batch-1 canvas)."""
    logits = log_probs(TABLE)
    state = hand(logits, prompt=(4, 5, 6), max_new_tokens=8)
    got = plugin(temperature=0.8).promote(state)
    gen = torch.Generator().manual_seed(sample_seed(0, 0))
    u = torch.rand((1, 3 + 8, 8), dtype=torch.float64, generator=gen)[0, 3:7]
    expected = (logits.double().exp() / (-torch.log(u)) ** 0.8).argmax(-1)
    assert torch.equal(got.tokens[0], expected)


def test_random_remasking_ranks_by_a_uniform_draw():
    state = hand(log_probs(TABLE), prompt=(4,), max_new_tokens=8)
    got = plugin(remasking="random", steps_per_token=0.5).promote(state)
    gen = torch.Generator().manual_seed(sample_seed(0, 0))
    u = torch.rand((1, 1 + 8), generator=gen)[0, 1:5]
    chosen = set(u.topk(2).indices.tolist()) - {1}  # a MASK argmax (position 1) stays open
    assert set(got.positions[0].nonzero().flatten().tolist()) == chosen


def test_tau_is_steps_per_token_and_steps_is_llada_s():
    state = hand(log_probs(TABLE))
    assert make_manager("llada", params={"tau": 0.5}).get_plugin("llada").steps_per_token == 0.5
    assert [plugin(steps_per_token=r).steps_per_block(state) for r in (1.0, 0.95, 0.5, 0.3, 0.0)] == [4, 4, 2, 1, 1]
    state.config = DecodeConfig(block_size=4, max_new_tokens=12)
    assert plugin(steps=6).steps_per_block(state) == 2
    with pytest.raises(ValueError, match="multiple of the number of blocks"):
        plugin(steps=7).steps_per_block(state)
    with pytest.raises(ValueError, match="--max-forwards 5"):
        plugin(steps=15).steps_per_block(state)
    state.config = attrs.evolve(state.config, temperature=0.5)
    with pytest.raises(ValueError, match="--set temperature=0.5"):
        plugin().steps_per_block(state)
    with pytest.raises(PluginError, match="not both"):
        make_manager("llada", params={"steps": 8, "tau": 0.5})


def test_defaults_are_generates_signature():
    p = plugin()
    assert (p.steps_per_token, p.steps, p.remasking, p.temperature, p.cfg_scale, p.logits_eos_inf,
            p.confidence_eos_eot_inf, p.mask_logit) == (1.0, None, "low_confidence", 0.0, 0.0, False, False, "remove")


def test_exactly_s_forwards_per_block_and_guidance_is_counted():
    model = ScriptedDenoiser(16, eos_bias=-50.0, seed=1)
    config = DecodeConfig(block_size=4, max_new_tokens=8)
    plain = generate(model, [[5, 6]], make_manager("llada", params={"tau": 0.5}), config)[0]
    assert plain.block_steps == [2, 2] and "guidance_forwards" not in plain.extras
    guided = generate(model, [[5, 6]], make_manager("llada", params={"tau": 0.5, "cfg_scale": 1.0}), config)[0]
    assert guided.block_steps == [2, 2] and guided.extras["guidance_forwards"] == 4


@pytest.mark.parametrize("params", [{}, {"tau": 0.5, "cfg_scale": 0.5, "mask_logit": "keep"},
                                    {"temperature": 1.0, "remasking": "random", "tau": 0.25}])
def test_decoding_invariants(params):
    """check-plugin's strategy-agnostic properties (`workbench.authoring.properties.check_plugin`), with the
    strategy's own temperature in place of --temperature, which llada refuses."""
    make = lambda: make_manager("llada", params=params)  # noqa: E731
    for seed in (0, 1):
        for block_causal in (False, True):
            model = ScriptedDenoiser(16, seed=seed, eos_bias=1.0, block_causal=block_causal)
            prompts = [[4 + (seed + j) % 12 for j in range(n)] for n in (3, 1, 5)]
            config = DecodeConfig(block_size=4, max_new_tokens=12, seed=seed)
            trace = P.record(make, model, prompts, config)
            P.check_progress(trace, config)
            P.check_no_return_to_mask(trace)
            P.check_tokens_final(trace)  # the `monotonicity` claim
            P.check_unfilled_reported(trace.results)
            P.check_eos_stop(trace.results, config, model.eos_id)
            P.check_prompt_unmodified(make, model, prompts, config)
            P.check_determinism(make, model, prompts, config)
            P.check_batch_invariance(make, model, prompts, config)


def test_cli_run_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "llada", "--tau", "0.5", "--trainer", "base", "--limit", "8",
                "--store", str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "llada" and result["n"] == 8
    assert result["decisions"]["promote"] == "llada" and "guidance" in result["decisions"]
    assert result["nfe"] % 4 == 0 and 0.0 <= result["accuracy"] <= 1.0  # blocks of 8 at tau 0.5: 4 forwards
