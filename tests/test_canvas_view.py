"""The canvas view (plugins with `canvas_view = True` read every generated position's logits and may feed the
positions after the block) and fully pre-filled blocks that cost no forward."""

from __future__ import annotations

import pytest
import torch

from workbench import FREE, DecodeConfig, PluginContractError, generate, hookimpl, make_manager
from workbench.models.native import build_random_model

VOCAB, TOKEN = 24, 7
PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12]]
CONFIG = DecodeConfig(block_size=4, max_new_tokens=12, cache="none")


@pytest.fixture(scope="module")
def bidirectional():
    return build_random_model(VOCAB, seed=3, hidden_size=32, num_layers=2, num_heads=2, block_causal=False,
                              initializer_range=0.5)


@pytest.fixture(scope="module")
def block_causal():
    return build_random_model(VOCAB, seed=3, hidden_size=32, num_layers=2, num_heads=2, block_causal=True,
                              initializer_range=0.5)


class Seer:
    """Records, per step, the raw block logits and the canvas view; optionally feeds TOKEN after the block."""

    canvas_view = True

    def __init__(self, feed_after: bool = False):
        self.feed_after, self.seen = feed_after, []

    @hookimpl
    def embed_state(self, state, model):
        if not (self.feed_after and state.canvas_view):
            return None
        table = model.embedding_table()
        block = torch.where(state.is_mask[..., None], model.mask_embedding(), table[state.ids])
        return torch.cat([block, table[TOKEN].expand(state.batch_size, state.after, -1)], dim=1)

    @hookimpl(tryfirst=True)
    def process_logits(self, state, logits):
        canvas = state.canvas_logits if state.canvas_view else None
        self.seen.append((state.block_index, state.start, state.running.clone(), logits.clone(), canvas))


def canvas_of(model, prompt: list[int], after: int | None) -> torch.Tensor:
    """The model's own logits (1, T, V) at block 1's first forward: the prompt, MASK in the block, MASK (or
    `after`) in the positions after it."""
    table = model.embedding_table()
    rest = model.mask_id if after is None else after
    ids = prompt + [model.mask_id] * CONFIG.block_size + [rest] * (CONFIG.max_new_tokens - CONFIG.block_size)
    x = table[torch.tensor(ids)][None]
    blocks = torch.tensor([[0] * len(prompt) + [1 + j // CONFIG.block_size for j in range(CONFIG.max_new_tokens)]])
    return model.denoise(x, block_ids=blocks, valid=torch.ones_like(blocks, dtype=torch.bool))


def test_canvas_logits_are_the_forwards_logits_at_every_generated_position(bidirectional):
    seer = Seer()
    generate(bidirectional, PROMPTS, make_manager("threshold", extra_plugins=[seer]), CONFIG)
    assert seer.seen
    for block, start, running, logits, canvas in seer.seen:
        assert canvas.shape == (len(PROMPTS), CONFIG.max_new_tokens, VOCAB) and canvas.dtype == torch.float32
        torch.testing.assert_close(canvas[running][:, start:start + CONFIG.block_size], logits, rtol=0, atol=0)
    # Block 1's first forward sees the prompt and MASK everywhere: the model's own logits of that canvas.
    _, _, _, _, first = seer.seen[0]
    expected = canvas_of(bidirectional, PROMPTS[0], None)[0, len(PROMPTS[0]):]
    torch.testing.assert_close(first[0], expected, rtol=1e-5, atol=1e-5)


def test_inputs_after_the_block_reach_the_forward(bidirectional):
    seer = Seer(feed_after=True)
    generate(bidirectional, PROMPTS[:1], make_manager("threshold", extra_plugins=[seer]), CONFIG)
    _, _, _, logits, canvas = seer.seen[0]
    expected = canvas_of(bidirectional, PROMPTS[0], TOKEN)[0, len(PROMPTS[0]):]
    torch.testing.assert_close(canvas[0], expected, rtol=1e-5, atol=1e-5)
    plain = canvas_of(bidirectional, PROMPTS[0], None)[0, len(PROMPTS[0]):]
    assert not torch.allclose(logits[0], plain[:CONFIG.block_size])  # the fed inputs changed the block's logits


@pytest.mark.parametrize("cache", ["none", "auto"])
def test_no_canvas_view_where_the_forward_does_not_compute_it(block_causal, bidirectional, cache):
    model = block_causal if cache == "none" else bidirectional  # block-causal, or a bidirectional KV cache
    config = DecodeConfig(block_size=4, max_new_tokens=8, cache="prefix" if cache == "auto" else "none")
    seer = Seer()
    generate(model, PROMPTS, make_manager("threshold", extra_plugins=[seer]), config)
    assert all(canvas is None for *_, canvas in seer.seen)

    class Reader:
        canvas_view = True

        @hookimpl
        def promote(self, state):
            return state.canvas_logits  # raises: not kept on this decode

    with pytest.raises(Exception, match="canvas_logits is not kept"):
        generate(model, PROMPTS, make_manager("threshold", extra_plugins=[Reader()]), config)


def test_embed_state_may_cover_the_positions_after_only_with_the_canvas_view(block_causal, bidirectional):
    class TooLong:
        canvas_view = True

        @hookimpl
        def embed_state(self, state, model):
            return model.embedding_table()[torch.zeros(state.batch_size, state.length + 1, dtype=torch.long)]

    for model in (block_causal, bidirectional):  # without the view, and with a wrong length under it
        with pytest.raises(PluginContractError, match="shape"):
            generate(model, PROMPTS, make_manager("threshold", extra_plugins=[TooLong()]),
                     DecodeConfig(block_size=4, max_new_tokens=12, cache="none"))


class FillSecondBlock:
    """Fixes every position of block 2 for the first prompt only."""

    @hookimpl
    def fill_block(self, state):
        fill = torch.full_like(state.ids, FREE)
        if state.block_index == 2:
            fill[state.rows == 0] = TOKEN
        return fill


@pytest.mark.parametrize("cache", ["none", "prefix"])
def test_a_fully_filled_block_costs_no_forward(block_causal, bidirectional, cache):
    model = bidirectional if cache == "none" else block_causal
    config = DecodeConfig(block_size=4, max_new_tokens=12, cache=cache)
    out = generate(model, PROMPTS, make_manager("threshold", params={"tau": 0.99},
                                                extra_plugins=[FillSecondBlock()]), config)
    assert out[0].ids[4:8] == [TOKEN] * 4 or model.eos_id in out[0].ids[:4]
    if model.eos_id not in out[0].ids[:4]:
        # Uncached: no forward. The block-causal prefix cache's block-start forward carries every row: one.
        assert out[0].block_steps[1] == (0 if cache == "none" else 1)
        assert out[1].block_steps[1] >= 1
    assert [r.nfe for r in out] == [sum(r.block_steps) for r in out]
    alone = generate(model, PROMPTS[1:], make_manager("threshold", params={"tau": 0.99}), config)
    assert alone[0].ids == out[1].ids  # the other row decodes as it does alone
