"""Uniform-state decoding in the core: open positions are fed random tokens redrawn every step, drawn from
per-sample generators; every built-in strategy runs (SPD with an explicit `open_input`); a model without a
mask token decodes uniform-state only. The models are the scripted fakes (consistency, not accuracy)."""

from __future__ import annotations

import pytest
import torch

from workbench.decoding.loop import generate
from workbench.authoring.properties import ScriptedDenoiser, check_batch_invariance, check_no_return_to_mask, record
from workbench.decoding.registry import hookimpl, make_manager
from workbench.decoding.state import DecodeConfig, ModelInputsDenied

UNIFORM = DecodeConfig(block_size=4, max_new_tokens=8, noise="uniform")
PARAMS = {"threshold": {}, "hierarchical": {}, "hard": {}, "spd": {"open_input": "mean"}}


class NoMask(ScriptedDenoiser):
    """A uniform-state model: no mask token at all (like DiffusionGemma)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.mask_id = None

    def mask_embedding(self):
        raise AssertionError("a uniform-state decode never asks for the mask embedding")


@pytest.mark.parametrize("strategy", list(PARAMS))
@pytest.mark.parametrize("block_causal", [True, False])
def test_every_builtin_decodes_a_uniform_canvas_batch_invariantly(strategy, block_causal):
    model = NoMask(16, eos_bias=-50.0, seed=1, block_causal=block_causal)
    prompts = [[5, 6], [7], [8, 9, 10]]
    make = lambda: make_manager(strategy, params=PARAMS[strategy])  # noqa: E731
    results = generate(model, prompts, make(), UNIFORM)
    assert all(len(r.ids) == 8 and all(0 <= t < 16 for t in r.ids) for r in results)
    check_batch_invariance(make, model, prompts, UNIFORM)  # per-sample noise: any batch, same decode
    check_no_return_to_mask(record(make, model, prompts, UNIFORM))


def test_open_positions_are_renoised_every_step_and_tokens_kept():
    inputs = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            inputs.append((state.ids.clone(), state.is_mask.clone()))

    model = NoMask(64, eos_bias=-50.0, seed=3)
    generate(model, [[5]], make_manager("threshold", params={"tau": 1.0}, extra_plugins=[Spy()]),
             DecodeConfig(block_size=6, max_new_tokens=6, noise="uniform"))
    (ids0, open0), (ids1, open1) = inputs[0], inputs[1]
    still_open = open0 & open1
    assert bool((ids0 != ids1)[still_open].any())  # fresh noise (64 tokens: a repeat everywhere is unlikely)
    tokens = ~open0
    assert torch.equal(ids0[tokens], ids1[tokens])  # a token position keeps its token


def test_noise_comes_from_the_model_noise_range():
    seen = []

    class Ranged(NoMask):
        def noise_range(self):
            return (10, 12)

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append(state.ids[state.is_mask].tolist())

    generate(Ranged(16, eos_bias=-50.0), [[5]], make_manager("threshold", params={"tau": 1.0},
                                                             extra_plugins=[Spy()]), UNIFORM)
    noise = [t for step in seen for t in step]
    assert noise and set(noise) <= {10, 11}


def test_mask_noise_on_a_model_without_a_mask_token_is_refused():
    with pytest.raises(ModelInputsDenied, match="has no mask token.*--noise uniform"):
        generate(NoMask(16), [[5]], make_manager("threshold"), DecodeConfig(block_size=4, max_new_tokens=4,
                                                                             noise="mask"))


def test_auto_noise_follows_the_model():
    seen = []

    class Spy:
        @hookimpl
        def on_step_end(self, state):
            seen.append(state.noise)

    config = DecodeConfig(block_size=4, max_new_tokens=4)
    generate(NoMask(16), [[5]], make_manager("threshold", extra_plugins=[Spy()]), config)
    generate(ScriptedDenoiser(16), [[5]], make_manager("threshold", extra_plugins=[Spy()]), config)
    assert seen[0] == "uniform" and seen[-1] == "mask"
