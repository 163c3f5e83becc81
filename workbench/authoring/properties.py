"""Decoding invariants as importable checks, for the workbench's tests and for plugin authors.

Every check raises `AssertionError` with a message saying which invariant broke. They take a
`make_manager` callable (a fresh plugin manager per run), a model, prompts and a `DecodeConfig`, or a
`Trace` recorded by `record`. Cheap fake denoisers make them fast enough for hypothesis:

- `ScriptedDenoiser`: deterministic logits from a fixed random projection of each position's input, its
  attention-visible context and its position id; float64 by default so batch invariance is exact.
- `OracleDenoiser`: probability 1 on the token of a fixed sequence at each position id.

A plugin author's test (or `workbench check-plugin`) runs `check_plugin(lambda: make_manager("spd",
extra_plugins=[MyIdea()]))`, which runs the strategy-agnostic invariants on small random problems.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import attrs
import pluggy
import torch

from workbench.decoding.loop import generate
from workbench.models.masks import decode_attention_mask, position_ids_from_valid
from workbench.decoding.registry import hookimpl
from workbench.decoding.state import BlockState, DecodeConfig, RowResult, Stash

MakeManager = Callable[[], pluggy.PluginManager]
PAD_ID, MASK_ID, EOS_ID = 0, 1, 2  # the fakes use the native tokenizer's special ids


# -- fake denoisers --------------------------------------------------------------------------------------


class ScriptedDenoiser:
    """A cheap deterministic `Denoiser`: logits = scale * (x + ctx) W + bias[position], where ctx is the
    mean input over the keys the position may attend to (block-causal or bidirectional)."""

    def __init__(self, vocab_size: int = 16, *, hidden: int = 8, seed: int = 0, scale: float = 3.0,
                 eos_bias: float = 0.0, block_causal: bool = False, dtype: torch.dtype = torch.float64,
                 max_positions: int = 512):
        g = torch.Generator().manual_seed(seed)
        self.vocab_size, self.block_causal = vocab_size, block_causal
        self.mask_id, self.eos_id, self.pad_id = MASK_ID, EOS_ID, PAD_ID
        self.table = torch.randn(vocab_size, hidden, generator=g, dtype=torch.float64).to(dtype)
        self.proj = torch.randn(hidden, vocab_size, generator=g, dtype=torch.float64).to(dtype)
        self.bias = torch.randn(max_positions, vocab_size, generator=g, dtype=torch.float64).to(dtype)
        self.bias[:, EOS_ID] += eos_bias
        self.scale = scale

    def embedding_table(self) -> torch.Tensor:
        return self.table

    def mask_embedding(self) -> torch.Tensor:
        return self.table[self.mask_id]

    def denoise(self, inputs_embeds, *, block_ids, valid):
        return self.denoise_masked(inputs_embeds, position_ids=position_ids_from_valid(valid),
                                   attn_mask=decode_attention_mask(block_ids, valid, self.block_causal))

    def denoise_masked(self, inputs_embeds, *, position_ids, attn_mask):
        """The same rule on an explicit layout (WINO's shadow block): (N, Q, D) -> (N, Q, V)."""
        attend = attn_mask[:, 0].to(inputs_embeds.dtype)  # (N, Q, Q)
        ctx = attend @ inputs_embeds / attend.sum(-1, keepdim=True)  # (N, Q, D)
        return self.scale * (inputs_embeds + ctx) @ self.proj + self.bias[position_ids]


class OracleDenoiser:
    """Puts probability 1 (in float32) on `sequence[position id]` at every position, whatever the input.

    A row whose prompt is `sequence[:P]` has the answer `sequence[P:]` (cut after its first EOS).
    """

    LOGIT = 50.0  # exp(-50) * V underflows next to 1 in float32, so conf is exactly 1.0

    def __init__(self, sequence: Sequence[int], vocab_size: int = 16, *, block_causal: bool = False,
                 hidden: int = 8):
        self.vocab_size, self.block_causal = vocab_size, block_causal
        self.mask_id, self.eos_id, self.pad_id = MASK_ID, EOS_ID, PAD_ID
        self.sequence = torch.tensor(list(sequence), dtype=torch.long)
        self.table = torch.randn(vocab_size, hidden, generator=torch.Generator().manual_seed(0))

    def embedding_table(self) -> torch.Tensor:
        return self.table

    def mask_embedding(self) -> torch.Tensor:
        return self.table[self.mask_id]

    def denoise(self, inputs_embeds, *, block_ids, valid):
        return self.denoise_masked(inputs_embeds, position_ids=position_ids_from_valid(valid), attn_mask=None)

    def denoise_masked(self, inputs_embeds, *, position_ids, attn_mask):
        """The same certainty on an explicit layout (WINO's shadow block reads its copies' position ids)."""
        target = self.sequence[position_ids.clamp(max=len(self.sequence) - 1)]
        return torch.nn.functional.one_hot(target, self.vocab_size).float() * self.LOGIT

    def answer(self, prompt_len: int, max_new_tokens: int) -> list[int]:
        ids = self.sequence[prompt_len:prompt_len + max_new_tokens].tolist()
        return ids[:ids.index(EOS_ID) + 1] if EOS_ID in ids else ids


def make_block_state(conf, *, is_mask=None, top=None, vocab_size: int = 16) -> BlockState:
    """A hand-made block state for unit tests of a rule: conf (B, L) nested lists or tensor; is_mask
    defaults to all True, top to token 7."""
    conf = torch.as_tensor(conf, dtype=torch.float32)
    b, length = conf.shape
    state = BlockState.start_block(block_index=1, start=0, rows=torch.arange(b), length=length,
                                   mask_id=MASK_ID, vocab_size=vocab_size,
                                   config=DecodeConfig(block_size=length), stash=Stash())
    state.conf = conf
    state.top = torch.full((b, length), 7) if top is None else torch.as_tensor(top)
    if is_mask is not None:
        state.is_mask = torch.as_tensor(is_mask, dtype=torch.bool)
        state.ids = torch.where(state.is_mask, MASK_ID, state.top)
    return state


# -- tracing ---------------------------------------------------------------------------------------------


@attrs.frozen
class StepRecord:
    """A copy of the block state after one step (rows are the block's rows)."""

    block_index: int
    step: int
    rows: list[int]
    ids: torch.Tensor
    is_mask: torch.Tensor
    active: torch.Tensor
    top: torch.Tensor
    conf: torch.Tensor
    promoted: torch.Tensor
    finishing: torch.Tensor
    done: torch.Tensor
    steps: torch.Tensor
    revoked: torch.Tensor
    waived: torch.Tensor
    cap: int = 0  # the block's forward cap in force (`state.cap`)


@attrs.define
class Trace:
    steps: list[StepRecord] = attrs.field(factory=list)
    blocks: list[tuple[int, list[int], torch.Tensor]] = attrs.field(factory=list)  # (block, rows, committed)
    results: list[RowResult] = attrs.field(factory=list)


class TraceRecorder:
    """Observer plugin that copies the state after every step and block."""

    def __init__(self):
        self.trace = Trace()

    @hookimpl
    def on_step_end(self, state: BlockState) -> None:
        self.trace.steps.append(StepRecord(
            state.block_index, state.step, state.rows.tolist(), state.ids.clone(), state.is_mask.clone(),
            state.active.clone(), state.top.clone(), state.conf.clone(), state.promoted.clone(),
            state.finishing.clone(), state.done.clone(), state.steps.clone(), state.revoked.clone(),
            state.waived.clone(), state.cap))

    @hookimpl
    def on_block_end(self, state: BlockState, committed: torch.Tensor) -> None:
        self.trace.blocks.append((state.block_index, state.rows.tolist(), committed.clone()))

    @hookimpl
    def on_generation_end(self, results: list[RowResult]) -> None:
        self.trace.results = list(results)


def record(make_manager: MakeManager, model, prompts, config: DecodeConfig) -> Trace:
    """Decode with a `TraceRecorder` registered last (it only observes) and return the trace."""
    pm = make_manager()
    recorder = TraceRecorder()
    pm.register(recorder, name="property-trace-recorder")
    generate(model, prompts, pm, config)
    return recorder.trace


def _steps_with_before(trace: Trace):
    """Yield (record, is_mask before the step, done before the step) for every step."""
    prev = None
    for rec in trace.steps:
        if prev is None or prev.block_index != rec.block_index:
            mask0, done0 = torch.ones_like(rec.is_mask), torch.zeros_like(rec.done)
        else:
            mask0, done0 = prev.is_mask, prev.done
        yield rec, mask0, done0
        prev = rec


# -- invariants on a trace -------------------------------------------------------------------------------


def check_progress(trace: Trace, config: DecodeConfig) -> None:
    """Every step promotes >= 1 position on each running row that has open positions (after this step's
    revocations), unless the plugin opted out of the progress fallback for that row; every block finishes
    within the forward cap."""
    for rec, mask0, done0 in _steps_with_before(trace):
        needs = ~done0 & ((mask0 | rec.revoked) & rec.active).any(-1) & ~rec.waived
        stuck = needs & ~rec.promoted.any(-1)
        assert not stuck.any(), f"block {rec.block_index} step {rec.step}: rows {stuck.nonzero().tolist()} " \
                                f"had open positions but nothing was promoted"
    for rec in trace.steps:  # the cap in force: --max-forwards, else what a plugin declares, else the block size
        assert int(rec.steps.max()) <= rec.cap, f"block {rec.block_index} ran past the cap of {rec.cap}"
    caps = [rec.cap for rec in trace.steps] or [config.cap]
    for r in trace.results:
        assert all(s <= max(caps) for s in r.block_steps), f"a block ran past the cap: {r.block_steps}"


def check_tokens_final(trace: Trace) -> None:
    """A promoted token never changes: its id at promotion is the committed id."""
    prev = None
    for rec in trace.steps:
        if prev is not None and prev.block_index == rec.block_index:
            tokens = ~prev.is_mask
            changed = tokens & (prev.ids != rec.ids)
            assert not changed.any(), f"block {rec.block_index} step {rec.step}: a promoted token changed"
        prev = rec


def check_one_token_per_step(trace: Trace) -> None:
    """Each running row with open positions promotes one confidence value per step (tau = 1): the single
    most confident position, or every position tied with it (dInfer's rule commits exact ties of the
    maximum, and a conf of exactly 1.0 in float32, a logit margin above ~17, passes tau = 1 anyway)."""
    for rec, mask0, done0 in _steps_with_before(trace):
        needs = ~done0 & (mask0 & rec.active).any(-1)
        for row in needs.nonzero().flatten().tolist():
            values = {float(c) for c in rec.conf[row][rec.promoted[row]]}
            assert len(values) == 1 or values == {1.0} or (len(values) == 2 and 1.0 in values), \
                f"block {rec.block_index} step {rec.step}: row {row} promoted confidences {sorted(values)}, " \
                f"expected one value"


def check_mask_suffix(trace: Trace) -> None:
    """Mask positions always form a contiguous suffix of the block (contiguous promotion)."""
    for rec in trace.steps:
        m = rec.is_mask.long()
        assert bool((m[:, 1:] >= m[:, :-1]).all()), \
            f"block {rec.block_index} step {rec.step}: mask positions are not a suffix: {rec.is_mask.tolist()}"


def check_no_return_to_mask(trace: Trace) -> None:
    """A token position returns to open only through `revoke` (recorded in `state.revoked`)."""
    for rec, mask0, _ in _steps_with_before(trace):
        assert not (rec.is_mask & ~mask0 & ~rec.revoked).any(), \
            f"block {rec.block_index} step {rec.step}: a token went back to open without being revoked"


def check_unfilled_reported(results: Sequence[RowResult], mask_id: int = MASK_ID) -> None:
    """Mask ids in an output (positions a strategy left masked at the forward cap) are exactly the count the
    core reports in `extras["unfilled"]`: an output is never silently partly masked."""
    for r in results:
        assert r.ids.count(mask_id) == r.extras.get("unfilled", 0), \
            f"output {r.ids} holds {r.ids.count(mask_id)} mask ids, reported unfilled {r.extras.get('unfilled', 0)}"


# -- invariants on whole decodes -------------------------------------------------------------------------


def check_eos_stop(results: Sequence[RowResult], config: DecodeConfig, eos_id: int = EOS_ID) -> None:
    """Nothing after the first EOS; the row stopped after the block containing it; tokens exclude EOS."""
    for r in results:
        if eos_id in r.ids:
            first = r.ids.index(eos_id)
            assert first == len(r.ids) - 1, f"tokens after EOS: {r.ids}"
            assert len(r.block_steps) == first // config.block_size + 1, \
                f"row decoded {len(r.block_steps)} blocks after EOS at generated position {first}"
            assert r.tokens == first
        else:
            assert r.tokens == len(r.ids)
        assert r.nfe == sum(r.block_steps), f"nfe {r.nfe} != forwards per block {r.block_steps}"


def check_prompt_unmodified(make_manager: MakeManager, model, prompts, config: DecodeConfig) -> list[RowResult]:
    """The prompts passed in are never modified."""
    before = copy.deepcopy([list(p) for p in prompts])
    results = generate(model, prompts, make_manager(), config)
    assert [list(p) for p in prompts] == before, "generate modified its prompts"
    return results


def check_determinism(make_manager: MakeManager, model, prompts, config: DecodeConfig) -> None:
    """Two runs with the same config (seed included) give the same ids and NFE."""
    a = generate(model, prompts, make_manager(), config)
    b = generate(model, prompts, make_manager(), config)
    assert [(r.ids, r.nfe) for r in a] == [(r.ids, r.nfe) for r in b], "same seed, different decodes"


def check_batch_invariance(make_manager: MakeManager, model, prompts, config: DecodeConfig) -> None:
    """A batch decodes to exactly the ids (and NFE) each row gets alone, greedy or sampled: with per-sample
    random streams (`DecodeConfig.rng == "sample"`, the default) a row draws the same numbers in any batch."""
    batch = generate(model, prompts, make_manager(), config)
    for i, prompt in enumerate(prompts):
        alone = generate(model, [prompt], make_manager(), config, sample_ids=[i])[0]
        assert (batch[i].ids, batch[i].nfe, batch[i].block_steps) == (alone.ids, alone.nfe, alone.block_steps), \
            f"row {i} (prompt length {len(prompt)}): batched {batch[i].ids} nfe {batch[i].nfe}, " \
            f"alone {alone.ids} nfe {alone.nfe}"


def check_oracle(make_manager: MakeManager, oracle: OracleDenoiser, prompt_lens: Sequence[int],
                 config: DecodeConfig, forwards_per_block: int = 1) -> None:
    """With an oracle denoiser every row reproduces its answer exactly, in `forwards_per_block` forwards
    per decoded block."""
    prompts = [oracle.sequence[:n].tolist() for n in prompt_lens]
    results = generate(oracle, prompts, make_manager(), config)
    for n, r in zip(prompt_lens, results):
        assert r.ids == oracle.answer(n, config.max_new_tokens), f"oracle answer {oracle.answer(n, 10**6)}, got {r.ids}"
        assert r.block_steps == [forwards_per_block] * len(r.block_steps), f"forwards per block {r.block_steps}"


def check_hybrid_embedding(hybrid_fn: Callable, e_top: torch.Tensor, e_mask: torch.Tensor, p: torch.Tensor,
                           atol: float = 1e-5) -> None:
    """DMax Eq. 9-10: ||h|| = p||E(top)|| + (1-p)||e_mask||; p = 1 gives E(top); p = 0 gives e_mask.
    (Equalities up to the 1e-6 epsilon of Eq. 10, relative to the norms.)"""
    h = hybrid_fn(e_top, e_mask, p)
    target = p * e_top.norm(dim=-1) + (1 - p) * e_mask.norm()
    assert torch.allclose(h.norm(dim=-1), target, atol=atol, rtol=1e-4), "hybrid norm differs from Eq. 10"
    ones, zeros = torch.ones_like(p), torch.zeros_like(p)
    assert torch.allclose(hybrid_fn(e_top, e_mask, ones), e_top, atol=atol, rtol=1e-4), "p=1 is not E(top)"
    assert torch.allclose(hybrid_fn(e_top, e_mask, zeros), e_mask.expand_as(e_top), atol=atol, rtol=1e-4), \
        "p=0 is not e_mask"


def check_plugin(make_manager: MakeManager, *, seeds: Sequence[int] = (0, 1, 2), vocab_size: int = 16) -> None:
    """The strategy-agnostic invariants on small random problems: progress and cap, EOS stop, prompt
    never modified, determinism, batch invariance (prompts of different lengths, early finishers)."""
    for seed in seeds:
        for block_causal in (False, True):
            model = ScriptedDenoiser(vocab_size, seed=seed, eos_bias=1.0, block_causal=block_causal)
            prompts = [[4 + (seed + j) % (vocab_size - 4) for j in range(n)] for n in (3, 1, 5)]
            config = DecodeConfig(block_size=4, max_new_tokens=12)
            trace = record(make_manager, model, prompts, config)
            check_progress(trace, config)
            check_no_return_to_mask(trace)
            check_unfilled_reported(trace.results)
            check_eos_stop(trace.results, config, model.eos_id)
            check_prompt_unmodified(make_manager, model, prompts, config)
            check_determinism(make_manager, model, prompts, attrs.evolve(config, temperature=1.0, seed=seed))
            check_batch_invariance(make_manager, model, prompts, config)
            check_batch_invariance(make_manager, model, prompts, attrs.evolve(config, temperature=1.0, seed=seed))
