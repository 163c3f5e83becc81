"""Dream's `diffusion_generate` as the `dream` strategy: golden transcripts of the authors' sampler, hand-computed
steps of each algorithm and of the schedule, the decoding invariants, and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transcripts import cases, check_case

from workbench import BlockState, DecodeConfig, PluginRuntimeError, Stash, generate, make_manager
from workbench.authoring import properties as P
from workbench.cli import main as cli
from workbench.decoding.rng import RowRandom, sample_seed

MASK = P.MASK_ID
# Four open positions over tokens 3..6 (ids 0-2 are PAD, MASK, EOS), built so that each confidence picks
# another position: max prob -> 0 (0.62), top1 - top2 -> 1 (0.38), lowest entropy -> 2 (0.673 nats).
PROBS = [[0.62, 0.30, 0.04, 0.04],   # p1 .62, margin .32, entropy .915
         [0.58, 0.20, 0.12, 0.10],   # p1 .58, margin .38, entropy 1.122
         [0.60, 0.40, 0.00, 0.00],   # p1 .60, margin .20, entropy .673
         [0.25, 0.25, 0.25, 0.25]]   # p1 .25, margin 0,   entropy 1.386
TOKENS = (3, 4, 5, 6)
VOCAB = 7


def dream(**params):
    return make_manager("dream", params=params).get_plugin("dream")


def step_state(probs=PROBS, *, step: int = 1, is_mask=None, context: int = 3, seed: int = 0) -> BlockState:
    """One row, one block holding the whole generation, after `step` forwards, with logits log(probs) at
    TOKENS (MASK and the other ids at -inf) and a `context`-token prompt."""
    probs = torch.tensor(probs, dtype=torch.float32)
    length = probs.shape[0]
    logits = torch.full((1, length, VOCAB), -math.inf)
    logits[0, :, list(TOKENS)] = probs.log()
    state = BlockState.start_block(block_index=1, start=0, rows=torch.arange(1), length=length, mask_id=MASK,
                                   vocab_size=VOCAB, config=DecodeConfig(block_size=length, max_new_tokens=length),
                                   stash=Stash(), rng=RowRandom("sample", seed, "cpu").bind(torch.arange(1)),
                                   context=torch.full((1, context), 3),
                                   context_valid=torch.ones(1, context, dtype=torch.bool))
    state.logits, state.step = logits, step
    if is_mask is not None:
        state.is_mask = torch.tensor([is_mask])
    return state


def promoted(plugin, state) -> tuple[list[bool], list[int]]:
    decision = plugin.promote(state)
    assert decision.fallback is False  # Dream's steps may decode nothing; the core must not add a position
    positions = decision.positions[0]
    return positions.tolist(), decision.tokens[0][positions].tolist()


# -- the authors' sampler, replayed ------------------------------------------------------------------------


@pytest.mark.parametrize("transcript, case", cases("dream"))
def test_matches_dreams_diffusion_generate(transcript, case):
    check_case(transcript, case)


# -- hand-computed steps -------------------------------------------------------------------------------------


def test_defaults_are_dreams_and_tau_sets_steps_per_token():
    plugin = dream()
    assert (plugin.alg, plugin.steps, plugin.steps_per_token, plugin.eps) == ("origin", None, 1.0, 1e-3)
    assert (plugin.temperature, plugin.top_p, plugin.top_k, plugin.alg_temp) == (0.0, None, None, None)
    assert (plugin.mask_logit, plugin.precision) == ("remove", "float32")
    assert dream(tau=0.5).steps_per_token == 0.5


@pytest.mark.parametrize("alg, position", [("maskgit_plus", 0), ("topk_margin", 1), ("entropy", 2)])
def test_each_confidence_picks_its_position(alg, position):
    """steps=2 over 4 masks: timesteps linspace(1, 1e-3, 3) = [1, .5005, .001], so step 1 decodes
    k = int(4 * (1 - .5005 / 1)) = int(1.998) = 1 position (the most confident by the algorithm's measure)
    with its argmax token, and step 2, the last, every position still open."""
    positions, tokens = promoted(dream(alg=alg, steps=2), step_state())
    assert positions == [i == position for i in range(4)] and tokens == [3]
    rest = [i != position for i in range(4)]
    positions, tokens = promoted(dream(alg=alg, steps=2), step_state(step=2, is_mask=rest))
    assert positions == rest and tokens == [3, 3, 3]


def test_the_first_of_as_many_steps_as_masks_decodes_nothing():
    """steps = 4 masks: k = int(4 * (1 - .75025)) = int(.999) = 0 at step 1, then 1 per step, and the last step
    decodes the two still open: Dream's truncation, kept (no progress fallback)."""
    plugin = dream(alg="maskgit_plus", steps=4)
    assert promoted(plugin, step_state()) == ([False] * 4, [])
    assert promoted(plugin, step_state(step=2))[0] == [True, False, False, False]
    assert promoted(plugin, step_state(step=4, is_mask=[False, True, True, False]))[0] == [False, True, True, False]


def test_top_k_renormalises_the_confidences_even_greedy():
    """top_k=2 keeps each position's two best tokens (and any tied with the second, as Dream's `<` does): p1
    becomes .62/.92 = .674, .58/.78 = .744, .60 and .25, so maskgit_plus decodes position 1 instead of 0 (why
    Dream's silent top_k=50 changes greedy decodes)."""
    assert promoted(dream(alg="maskgit_plus", steps=2, top_k=2), step_state())[0] == [False, True, False, False]


def test_dreams_filters_on_hand_computed_distributions():
    """p = (.1, .3, .6): top_p keeps the smallest prefix of the sorted tokens whose mass reaches it (the token
    that crosses it included), top_k the k best, then the softmax renormalises; temperature divides first."""
    from strategies.dream import dream_probs

    logits = torch.tensor([[0.0, math.log(3.0), math.log(6.0)]])
    assert dream_probs(logits, 0.0, 0.5, None).tolist() == [[0.0, 0.0, 1.0]]  # .6 crosses .5 alone
    assert dream_probs(logits, 0.0, 0.8, None)[0].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])  # .6 + .3
    assert dream_probs(logits, 0.0, None, 2)[0].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert dream_probs(logits, 2.0, None, None)[0].tolist() == pytest.approx(
        torch.tensor([0.0, math.log(3.0) / 2, math.log(6.0) / 2]).softmax(-1).tolist())


def test_origin_decodes_each_position_with_probability_1_minus_s_over_t():
    """origin at step 1 of 2: each open position draws u ~ U[0, 1) from the row's generator and is decoded when
    u < 1 - .5005 = .4995; the tokens are the argmax (temperature 0). The last step decodes every position."""
    gen = torch.Generator().manual_seed(sample_seed(0, 0))
    expected = (torch.rand(4, generator=gen) < 1 - torch.linspace(1, 1e-3, 3)[1]).tolist()
    positions, tokens = promoted(dream(steps=2), step_state())
    assert positions == expected and tokens == [3] * sum(expected)
    assert promoted(dream(steps=2), step_state(step=2))[0] == [True] * 4


def test_alg_temp_draws_the_positions_from_a_softmax_of_the_confidences():
    """alg_temp > 0: the k positions are one multinomial draw from softmax(conf / alg_temp) over Dream's whole
    row (the 3 context positions at probability 0 included), from the row's generator."""
    gen = torch.Generator().manual_seed(sample_seed(0, 0))
    conf = torch.tensor([-math.inf] * 3 + [row[0] for row in PROBS])
    expected = int(torch.multinomial((conf / 0.1).softmax(-1), 1, generator=gen)) - 3
    positions, _ = promoted(dream(alg="maskgit_plus", steps=2, alg_temp=0.1), step_state())
    assert positions == [i == expected for i in range(4)]


def test_a_decoded_mask_stays_open_with_mask_logit_keep():
    """Dream keeps the MASK logit: where MASK is the argmax the position is 'decoded' to MASK and stays masked.
    Position 0 puts .7 on MASK: with keep it is chosen (p1 .7) and stays open; with remove it decodes token 3."""
    state = step_state()
    logits = state.logits.clone()
    logits[0, 0, MASK] = math.log(0.7 / 0.3)  # the tokens' logits sum to probability 1: p(MASK) = .7
    state.logits = logits
    keep = dream(alg="maskgit_plus", steps=2, mask_logit="keep")
    assert promoted(keep, state) == ([False] * 4, [])
    state.logits = dream(mask_logit="remove").process_logits(state=state, logits=logits.clone())
    assert promoted(dream(alg="maskgit_plus", steps=2), state) == ([True, False, False, False], [3])


# -- steps per block and refusals ------------------------------------------------------------------------------


def test_steps_per_token_sets_the_forwards_of_each_block(tiny_model):
    """round(steps_per_token * block length) forwards per block, at least one (tau 0: the block in one
    forward); a confidence algorithm decodes its last masks at the last step, so it never stops earlier."""
    config = DecodeConfig(block_size=4, max_new_tokens=8, cache="none")
    for tau, forwards in ((1.0, 4), (0.5, 2), (0.0, 1)):
        manager = make_manager("dream", params={"tau": tau, "alg": "maskgit_plus"})
        assert generate(tiny_model, [[5, 6, 7]], manager, config)[0].block_steps[0] == forwards
    results = generate(tiny_model, [[5, 6, 7]], make_manager("dream", params={"steps": 6, "alg": "entropy"}), config)
    assert results[0].block_steps[0] == 3  # Dream's total over the generation, split over the 2 blocks


@pytest.mark.parametrize("params, config, message", [
    ({"steps": 5}, {}, "split evenly"),
    ({"steps": 16}, {}, "forward cap"),
    ({"temperature": 0.0}, {"temperature": 0.5}, "own temperature"),
])
def test_settings_dream_cannot_run_are_refused(tiny_model, params, config, message):
    config = DecodeConfig(block_size=4, max_new_tokens=8, cache="none", **config)
    with pytest.raises(PluginRuntimeError, match=message):
        generate(tiny_model, [[5, 6]], make_manager("dream", params=params), config)


@pytest.mark.parametrize("params", [{"alg": "confidence_threshold"}, {"top_k": 0}, {"top_p": 0.0}, {"eps": 1.0},
                                    {"alg_temp": -1.0}, {"steps": 0}, {"tau": 1.5}, {"precision": "bf16"}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(ValueError):
        make_manager("dream", params=params)


# -- invariants ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{}, {"alg": "maskgit_plus"}, {"alg": "topk_margin", "top_k": 3},
                                    {"alg": "entropy", "temperature": 1.0, "top_p": 0.9, "alg_temp": 0.5},
                                    {"temperature": 1.0, "tau": 0.5}])
def test_decoding_invariants(params):
    """`check-plugin`'s invariants (progress or opt-out, cap, no silent return to mask, unfilled reported, EOS
    stop, prompt untouched, determinism, batch = alone) on the scripted model; Dream's own temperature stands in
    for the decode temperature check_plugin uses, which dream refuses."""
    def manager():
        return make_manager("dream", params=params)

    for block_causal in (False, True):
        model = P.ScriptedDenoiser(16, seed=0, eos_bias=1.0, block_causal=block_causal)
        prompts = [[4 + j % 12 for j in range(n)] for n in (3, 1, 5)]
        config = DecodeConfig(block_size=4, max_new_tokens=12)
        trace = P.record(manager, model, prompts, config)
        P.check_progress(trace, config)
        P.check_no_return_to_mask(trace)
        P.check_tokens_final(trace)
        P.check_unfilled_reported(trace.results)
        P.check_eos_stop(trace.results, config, model.eos_id)
        P.check_prompt_unmodified(manager, model, prompts, config)
        P.check_determinism(manager, model, prompts, config)
        P.check_batch_invariance(manager, model, prompts, config)


# -- command line --------------------------------------------------------------------------------------------------


def test_run_decodes_with_dream_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "dream", "--set", "alg=entropy", "--tau", "0.5", "--limit", "2", "--json",
                "--quiet", "--store", str(tmp_path / "s.db")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["strategy"] == "dream" and out["n"] == 2
    assert out["decisions"]["promote"] == "dream" and out["params"]["steps_per_token"] == 0.5
