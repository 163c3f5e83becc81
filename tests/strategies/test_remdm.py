"""ReMDM remasking: the authors' sampler replayed, one reverse step by hand, the decoding invariants, the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transcripts import cases, check_case

from strategies.remdm import ReverseStep, race
from workbench import DecodeConfig, generate, hookimpl, make_manager
from workbench.authoring import properties as P
from workbench.cli import main as cli
from workbench.decoding.catalog import StrategyParamError

MASK = P.MASK_ID


@pytest.mark.parametrize("transcript, case", cases("remdm"))
def test_replays_the_authors_sampler(transcript, case):
    check_case(transcript, case)


def strategy(**params):
    return make_manager("remdm", params=params).get_plugin("remdm")


def uniforms_for(exponentials: dict, shape) -> torch.Tensor:
    """Uniforms u whose race weights E = 1e-10 - log(u + 1e-10) are ~ the given values (1 elsewhere)."""
    u = torch.full(shape, math.exp(-1.0), dtype=torch.float64)
    for index, e in exponentials.items():
        u[index] = math.exp(-e)
    return u


def test_one_remdm_cap_step_by_hand():
    # Block of 2 at the first of 2 time steps (t = 1, alpha_t = 0, alpha_s = 1 - (1 - dt) = dt, dt = 0.499995),
    # schedule cap with eta 0.25: sigma = eta (alpha_t = 0). Position 0 holds token 3, position 1 is masked
    # with x_theta = 0.8 on token 5, 0.2 on token 6.
    step = ReverseStep(strategy(schedule="cap", eta=0.25, steps=2), steps=2, mask_id=MASK)
    x = torch.tensor([[3, MASK]])
    p = torch.zeros(1, 2, 8)
    p[0, 0, 3] = 1.0  # a token position's x_theta is one-hot on its token (carry-over)
    p[0, 1, 5], p[0, 1, 6] = 0.8, 0.2
    conf = torch.full((1, 2), -torch.inf)
    # Token position: q = 0.75 at the token, 0.25 at MASK. Race: q / E.
    #   E_token = 1, E_mask = 0.5: 0.75 vs 0.5 -> kept;  E_mask = 0.2: 0.75 vs 1.25 -> remasked.
    # Masked position: q = p * alpha_s (0.399996 at 5, 0.099999 at 6), q[MASK] = 1 - alpha_s = 0.500005.
    #   E_5 = 0.5, E_mask = 1: 0.799992 vs 0.500005 -> token 5;  E_5 = 1, E_mask = 1: MASK wins.
    kept_and_5 = uniforms_for({(0, 0, MASK): 0.5, (0, 1, 5): 0.5}, (1, 2, 8))
    assert step(0, x, p, kept_and_5, conf).tolist() == [[3, 5]]
    remasked_and_masked = uniforms_for({(0, 0, MASK): 0.2}, (1, 2, 8))
    assert step(0, x, p, remasked_and_masked, conf).tolist() == [[MASK, MASK]]
    # The race is argmax q / E in float64 over the whole vocabulary.
    q = torch.tensor([[[0.0, 0.2, 0.7, 0.1]]])
    assert race(q, uniforms_for({(0, 0, 3): 0.1}, (1, 1, 4))).tolist() == [[3]]  # 1.0 > 0.7


def test_rescale_and_loop_sigma_by_hand():
    # Second of 4 time steps: t = 1 - dt, alpha_t = dt, alpha_s = 2 dt, dt = (1 - 1e-5) / 4.
    dt = (1 - 1e-5) / 4
    sigma_max = min(1.0, (1 - 2 * dt) / dt)  # = 1 (capped)
    x = torch.tensor([[4]])
    p = torch.zeros(1, 1, 6)
    p[0, 0, 4] = 1.0
    conf = torch.full((1, 1), -torch.inf)
    # rescale, eta 0.5: sigma = 0.5 * sigma_max = 0.5, so E_token = 1, E_mask = 0.9 remasks (0.5/0.9 > 0.5).
    rescale = ReverseStep(strategy(schedule="rescale", eta=0.5, steps=4), steps=4, mask_id=MASK)
    assert sigma_max == 1.0
    assert rescale(1, x, p, uniforms_for({(0, 0, MASK): 0.9}, (1, 1, 6)), conf).tolist() == [[MASK]]
    assert rescale(1, x, p, uniforms_for({(0, 0, MASK): 1.1}, (1, 1, 6)), conf).tolist() == [[4]]
    # loop: t = 0.75 > t_on = 0.55 is phase 1, an MDLM step: a token is never remasked, whatever E_mask.
    loop = ReverseStep(strategy(schedule="loop", eta=0.5, steps=4), steps=4, mask_id=MASK)
    assert loop(1, x, p, uniforms_for({(0, 0, MASK): 1e-6}, (1, 1, 6)), conf).tolist() == [[4]]
    # t = 0.5 (third step) is phase 2: remask with sigma = eta = 0.5 (same race as rescale above).
    assert loop(2, x, p, uniforms_for({(0, 0, MASK): 0.9}, (1, 1, 6)), conf).tolist() == [[MASK]]


def test_defaults_tau_and_validation():
    plugin = strategy()
    assert (plugin.schedule, plugin.eta, plugin.nucleus_p, plugin.steps) == ("loop", 0.02, 0.9, None)
    assert (plugin.t_on, plugin.t_off, plugin.alpha_on, plugin.noise_removal) == (0.55, 0.05, 0.9, True)
    assert strategy(tau=0.3).eta == 0.3
    for bad in ({"eta": 1.5}, {"schedule": "nope"}, {"t_on": 0.1, "t_off": 0.2}, {"steps": 0},
                {"nucleus_p": 0.0}, {"alpha_on": 1.0}):
        with pytest.raises(StrategyParamError):
            make_manager("remdm", params=bad)


def decode(prompts, config, **params):
    return generate(P.ScriptedDenoiser(16, seed=3, scale=2.0), prompts, make_manager("remdm", params=params), config)


def test_steps_get_their_forwards_unless_an_explicit_cap_is_smaller():
    # No --max-forwards: the strategy declares steps + 1 forwards per block (forwards_per_block) and gets them.
    (row,) = decode([[5, 6]], DecodeConfig(block_size=4, max_new_tokens=4), steps=8)
    assert row.block_steps[0] <= 9 and MASK not in row.ids
    with pytest.raises(Exception, match="--max-forwards 9"):  # an explicit cap that is too small is refused
        decode([[5, 6]], DecodeConfig(block_size=4, max_new_tokens=4, max_forwards_per_block=4), steps=8)
    # The default fits the cap: cap - 1 time steps and the noise-removal forward.
    (row,) = decode([[5, 6]], DecodeConfig(block_size=4, max_new_tokens=8))
    assert all(s <= 4 for s in row.block_steps) and MASK not in row.ids
    # A cap of 1 leaves no time step: the block is one argmax forward.
    (row,) = decode([[5, 6]], DecodeConfig(block_size=3, max_new_tokens=3, max_forwards_per_block=1))
    assert row.block_steps == [1] and len(row.ids) >= 1 and MASK not in row.ids


class Revocations:
    def __init__(self):
        self.revoked = 0

    @hookimpl
    def on_step_end(self, state):
        self.revoked += int(state.revoked.sum())


def count_revocations(prompts, config, **params):
    counter = Revocations()
    manager = make_manager("remdm", params=params, extra_plugins=[counter])
    generate(P.ScriptedDenoiser(16, seed=3, scale=2.0), prompts, manager, config)
    return counter.revoked


def test_eta_zero_never_remasks_and_a_large_eta_does():
    config = DecodeConfig(block_size=6, max_new_tokens=12, max_forwards_per_block=13)
    prompts = [[5, 6, 7], [9, 4]]
    for schedule in ("cap", "rescale", "loop"):
        assert count_revocations(prompts, config, schedule=schedule, eta=0.0, steps=12) == 0
        assert count_revocations(prompts, config, schedule=schedule, eta=0.5, steps=12) > 0
    assert count_revocations(prompts, config, schedule="mdlm", steps=12) == 0


def test_without_noise_removal_open_positions_stay_masked_and_are_reported():
    # loop with alpha_on 0.5 and eta 0: alpha stops at about 1/2 and the remasking phase unmasks nothing
    config = DecodeConfig(block_size=8, max_new_tokens=8, max_forwards_per_block=4)
    results = decode([[5, 6, 7], [9]], config, schedule="loop", eta=0.0, t_on=0.3, t_off=0.1, alpha_on=0.5,
                     steps=4, noise_removal=False)
    assert any(MASK in r.ids for r in results)
    P.check_unfilled_reported(results)


@pytest.mark.parametrize("schedule, temperature", [("loop", 0.0), ("cap", 0.7), ("conf", 0.0)])
def test_decoding_invariants(schedule, temperature):
    # The check-plugin invariants that a remasking sampler keeps: contract, returns to open only through
    # revoke, the forward cap, EOS stops a row, batch invariance (per-sample streams), determinism, prompts
    # untouched. Not the ones it breaks by design: promoted tokens may change (monotonicity), and it spends its
    # time schedule even on a certain model (the oracle's L + 1 forwards).
    def mm():
        return make_manager("remdm", params={"schedule": schedule, "eta": 0.4, "steps": 6})

    for seed, block_causal in ((0, False), (1, True)):
        model = P.ScriptedDenoiser(12, seed=seed, scale=3.0, eos_bias=1.0, block_causal=block_causal)
        prompts = [[3, 4, 5], [7], [9, 10, 3, 4, 8]]
        config = DecodeConfig(block_size=4, max_new_tokens=9, max_forwards_per_block=7, temperature=temperature,
                              seed=seed)
        trace = P.record(mm, model, prompts, config)
        P.check_progress(trace, config)  # ReMDM opts out of the fallback: this checks the cap
        P.check_no_return_to_mask(trace)
        P.check_eos_stop(trace.results, config)
        P.check_unfilled_reported(trace.results)
        assert all(0 <= t < model.vocab_size and t != MASK for r in trace.results for t in r.ids)
        P.check_batch_invariance(mm, model, prompts, config)
        P.check_determinism(mm, model, prompts, config)
        P.check_prompt_unmodified(mm, model, prompts, config)


def test_an_oracle_model_is_reproduced():
    oracle = P.OracleDenoiser([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 3, 4, 5, 6], 16)
    config = DecodeConfig(block_size=4, max_new_tokens=8, max_forwards_per_block=9)
    prompts = [oracle.sequence[:n].tolist() for n in (2, 4)]
    for r, n in zip(generate(oracle, prompts, make_manager("remdm", params={"eta": 0.5, "steps": 8}), config),
                    (2, 4)):
        assert r.ids == oracle.answer(n, 8)


def test_uniform_state_canvas_is_refused():
    with pytest.raises(Exception, match="absorbing-state"):
        decode([[5, 6]], DecodeConfig(block_size=4, max_new_tokens=4, noise="uniform"))


def test_workbench_run_on_a_shipped_model(tmp_path, capsys):
    assert cli(["run", "--strategy", "remdm", "--trainer", "oput", "--limit", "4", "--store",
                str(tmp_path / "r.db"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "remdm" and result["n"] == 4 and result["nfe"] > 0
    assert result["decisions"]["revoke"].startswith("remdm")
