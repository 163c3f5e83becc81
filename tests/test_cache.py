"""KV caches: exact prefix cache (block-causal), Fast-dLLM prefix/dual refresh schedule, runner choice."""

from __future__ import annotations

import pytest
import torch

from workbench.decoding.cache import (BlockCausalCache, CanvasRunner, FastDllmCache, KVCache, make_runner,
                             resolve_mode, running_index, CacheUnavailable)
from workbench.decoding.loop import generate
from workbench.models.native import build_random_model
from workbench.authoring.properties import ScriptedDenoiser
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig

STRATEGIES = ("threshold", "hierarchical", "hard", "spd")
PROMPTS = [[5, 6, 7], [9], [10, 11, 12, 13, 14], [3, 4], [7, 7, 8, 9, 20, 21, 22]]


def peaky_model(block_causal=True, dtype=torch.float64, seed=4):
    """Random weights large enough for confident, varied predictions: rows finish blocks at different
    steps and emit EOS in different blocks."""
    return build_random_model(24, seed=seed, dtype=dtype, hidden_size=32, num_layers=2, num_heads=2,
                              initializer_range=0.4, block_causal=block_causal)


def decode(model, strategy, cache, prompts=PROMPTS, tau=0.5, **config):
    key = "threshold" if strategy == "hierarchical" else "tau"
    config = DecodeConfig(**{"block_size": 4, "max_new_tokens": 16, "cache": cache, **config})
    return generate(model, prompts, make_manager(strategy, params={key: tau}), config)


class Spy:
    """Wraps a cached denoiser; records every forward as (kind, start, length, stop)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def denoise(self, inputs_embeds, *, block_ids, valid):
        self.calls.append(("full", 0, inputs_embeds.shape[1], inputs_embeds.shape[1]))
        return self.inner.denoise(inputs_embeds, block_ids=block_ids, valid=valid)

    def denoise_kv(self, inputs_embeds, **kw):
        self.calls.append(("kv", kw["start"], inputs_embeds.shape[1], kw["stop"]))
        return self.inner.denoise_kv(inputs_embeds, **kw)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("tau", [0.0, 0.5, 0.95])
def test_exact_cache_gives_identical_tokens(strategy, tau):
    model = peaky_model()
    plain = decode(model, strategy, "none", tau=tau)
    for cache in ("prefix", "auto", "dual"):  # dual = exact prefix on a block-causal model
        cached = decode(model, strategy, cache, tau=tau)
        assert [(r.ids, r.nfe, r.block_steps) for r in cached] == [(r.ids, r.nfe, r.block_steps) for r in plain]


def test_the_fixture_has_early_finishers():
    results = decode(peaky_model(), "threshold", "prefix")
    assert len({len(r.block_steps) for r in results}) > 1  # rows stop after different blocks (EOS)
    assert any(len(set(steps)) > 1 for steps in zip(*[r.block_steps for r in results]))  # and within blocks


def test_float32_exact_cache_matches_too():
    model = peaky_model(dtype=torch.float32, seed=3)
    for strategy in ("threshold", "spd"):
        assert [r.ids for r in decode(model, strategy, "prefix")] == [r.ids for r in decode(model, strategy, "none")]


def test_nfe_counts_the_prefill():
    """The prompt's keys/values are computed by the block's first forward, which NFE counts: every model
    call is counted, the first one holds the whole prompt, later ones only the block."""
    spy = Spy(peaky_model())
    result = decode(spy, "threshold", "prefix", prompts=[[5, 6, 7]], tau=1.0, max_new_tokens=8)[0]
    assert result.nfe == len(spy.calls) == sum(result.block_steps) == 8
    assert spy.calls[0] == ("kv", 0, 3 + 4, 7)  # prefill: prompt and block 1 in one forward
    assert spy.calls[1:4] == [("kv", 3, 4, 7)] * 3  # block 1: only the block
    assert spy.calls[4] == ("kv", 3, 8, 11)  # block 2: block 1's committed ids enter the cache
    assert spy.calls[5:] == [("kv", 7, 4, 11)] * 3


def test_finished_rows_are_compacted_out_of_the_cache():
    model = peaky_model()
    runner = make_runner(model, "prefix")
    rows_per_block = []
    original = runner.start_block

    def start_block(ids, *args):
        rows_per_block.append((ids.shape[0], runner.cache.rows if runner.cache is not None else None))
        return original(ids, *args)

    runner.start_block = start_block
    config = DecodeConfig(block_size=4, max_new_tokens=16)
    generate(model, PROMPTS, make_manager("threshold", params={"tau": 0.5}), config, runner=runner)
    assert rows_per_block[0] == (5, None)
    assert all(rows == cached for rows, cached in rows_per_block[1:])  # compacted with the batch
    assert rows_per_block[-1][0] < 5


class RecordingFake:
    """Bidirectional fake with the cache API. Each forward writes its call number into the key buffer at
    its positions, so a call sees which forward last wrote every cached position."""

    vocab_size, mask_id, eos_id, pad_id = 16, 1, 2, 0

    def __init__(self, block_causal=False):
        self.block_causal = block_causal
        gen = torch.Generator().manual_seed(0)
        self.table = torch.randn(16, 8, generator=gen, dtype=torch.float64)
        self.proj = torch.randn(8, 16, generator=gen, dtype=torch.float64)
        self.calls: list[dict] = []

    def embedding_table(self):
        return self.table

    def mask_embedding(self):
        return self.table[self.mask_id]

    def denoise(self, inputs_embeds, *, block_ids, valid):
        raise AssertionError("a cached runner must not call denoise")

    def denoise_kv(self, inputs_embeds, *, position_ids, attn_mask, cache, start, stop, logits=slice(None)):
        n, length, _ = inputs_embeds.shape
        k, _ = cache.buffers(0, n, 1, 1, inputs_embeds.dtype, inputs_embeds.device)
        k[:, :, start:start + length] = len(self.calls) + 1
        self.calls.append(dict(start=start, length=length, stop=stop, writers=k[0, 0, :stop, 0].long().tolist(),
                               positions=position_ids[0].tolist(), mask=tuple(attn_mask.shape)))
        out = (inputs_embeds @ self.proj)[:, logits] * 4.0
        out[..., self.eos_id] = -50.0  # never EOS: every block is decoded
        return out


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_fast_dllm_refresh_schedule(mode):
    fake = RecordingFake()
    config = DecodeConfig(block_size=4, max_new_tokens=8, cache=mode)
    # One token per step (the single most confident; this fake ties every masked position, which dInfer's
    # threshold rule would commit together), so each block of 4 takes 4 forwards.
    one_per_step = make_manager("hierarchical", params={"threshold": 1.0, "low_threshold": 1.0})
    result = generate(fake, [[5, 6, 7]], one_per_step, config)[0]
    total, calls = 3 + 8, fake.calls
    assert result.block_steps == [4, 4] and result.nfe == len(calls) == 8
    for block, (lo, hi) in enumerate([(3, 7), (7, 11)]):
        first, rest = calls[4 * block], calls[4 * block + 1:4 * block + 4]
        n_first = 4 * block + 1  # call number of the block-start forward
        assert (first["start"], first["length"], first["stop"]) == (0, total, total)  # full canvas refresh
        assert first["positions"] == list(range(total))
        for step in rest:
            if mode == "prefix":  # block and the suffix of masks, against the cached prefix
                assert (step["start"], step["length"], step["stop"]) == (lo, total - lo, total)
                assert step["positions"] == list(range(lo, total))
                assert step["mask"] == (1, 1, total - lo, total)
            else:  # block only; the suffix comes from the block-start forward
                assert (step["start"], step["length"], step["stop"]) == (lo, hi - lo, total)
                assert step["writers"][hi:] == [n_first] * (total - hi)
                assert step["mask"] == (1, 1, hi - lo, total)
            assert step["writers"][:lo] == [n_first] * lo  # prefix refreshed at block start, then kept


def test_runner_choice():
    causal, bidir = peaky_model(True), peaky_model(False)
    scripted = ScriptedDenoiser(16, block_causal=True)
    assert type(make_runner(causal)) is BlockCausalCache
    assert type(make_runner(causal, "dual")) is BlockCausalCache
    assert type(make_runner(causal, "none")) is CanvasRunner
    assert type(make_runner(bidir)) is CanvasRunner  # approximate caches only on request
    assert make_runner(bidir, "prefix").mode == "prefix" and make_runner(bidir, "dual").mode == "dual"
    assert isinstance(make_runner(bidir, "dual"), FastDllmCache)
    assert resolve_mode(scripted, "auto") == "none" and type(make_runner(scripted, "auto")) is CanvasRunner
    for mode in ("prefix", "dual"):  # no cache API: refused, never silently none
        with pytest.raises(CacheUnavailable, match=f"--cache {mode}: ScriptedDenoiser has no key/value cache"):
            make_runner(scripted, mode)
    with pytest.raises(ValueError):
        resolve_mode(causal, "full")
    with pytest.raises(ValueError):
        DecodeConfig(cache="full")
    assert DecodeConfig().cache == "auto"


def test_running_index_and_select():
    running = torch.tensor([True, False, True, True, False])
    assert running_index(running, 3).tolist() == [0, 2, 3]
    cache = KVCache(6)
    k, v = cache.buffers(0, 5, 2, 3, torch.float32, torch.device("cpu"))
    k[:] = torch.arange(5.0)[:, None, None, None]
    sub = cache.select(torch.tensor([1, 4]), upto=4)
    assert sub.rows == 2 and sub.layers[0][0].shape == (2, 2, 4, 3) and sub.layers[0][0][:, 0, 0, 0].tolist() == [1, 4]


def test_compiled_forward_gives_identical_tokens():
    model = peaky_model()
    config = DecodeConfig(block_size=4, max_new_tokens=8)
    plain = generate(model, PROMPTS[:2], make_manager("spd"), config)
    runner = make_runner(model, "prefix", compile="eager")  # dynamo tracing without a C++ toolchain
    compiled = generate(model, PROMPTS[:2], make_manager("spd"), config, runner=runner)
    assert [r.ids for r in compiled] == [r.ids for r in plain]
