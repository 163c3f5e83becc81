"""Hook specifications of the block-decoding loop (the contract between the core and every strategy).

Per generation, `generate` decodes blocks left to right. Per block, for the rows still generating::

    state = BlockState(...)                  # every position of the block is an open position
    fill_block(state)                        # decision: tokens fixed before decoding         (B, L) long
    <rows with every position fixed are done (no forward), where the runner allows>
    guidance(state)                          # decision: classifier-free guidance     Guidance or None
    while some row of the block is not done:
        embed_state(state, model)            # decision: input embeddings of the block     (B, L, D)
        <forward of the active rows>         # core: the block's logits                     (b, L, V)
        <guided block: the same inputs against the unconditional context; u + (w + 1)(c - u)>
        process_logits(state, logits)        # decision: logits the step reads              (b, L, V)
        <core: state.top, state.conf (float32), state.probs / state.logits when asked>
        revoke(state)                        # decision: token positions sent back to open  (B, L) bool
        promote(state)                       # decision: open positions that become tokens  (B, L) bool
        <core fallback: a row with open positions that promoted nothing gets its most confident one>
        <core: open positions of a uniform-state canvas get fresh random tokens>
        converge(state)                      # decision: rows whose block is final          (B,) bool
        <rows converged or at the forward cap are finished>
        commit(state)                        # decision: final ids of the block             (B, L) long
        on_step_end(state)                   # observers
    on_block_end(state, committed)           # observers, once per block
    on_generation_end(results)               # observers, once per `generate` call

Open positions are the positions whose token is not decided: on an absorbing-state canvas they are fed the
mask embedding, on a uniform-state canvas (`state.noise == "uniform"`) random tokens that the core redraws
after every step (so a token `revoke` sends back to open is renoised).

Decision hooks stop at the first non-None result (`firstresult`); the core's defaults
(`workbench/decoding/defaults.py`) are ordinary plugins marked `trylast=True`, so a strategy implements only what it
changes and an override plugin registered after the strategy answers only the hooks it implements.
The core checks every decision result (`workbench/decoding/contract.py`) and raises `PluginContractError` naming
the plugin that answered (and any wrapper that changed the result); an exception raised inside a hook
implementation becomes a `PluginRuntimeError` naming the plugin, the hook and the file:line. A plugin
writes only its own `state.stash` entries: the core checks after each call that no state tensor was written
or replaced. Observers are all called and their results ignored.

Hooks are called once per step for the whole batch, never per token (a hook call costs ~1.5 us).
A plugin that runs a fixed schedule declares the forwards a block of length L needs with a method
`forwards_per_block(L) -> int | None`; the core makes that the block's cap (`state.cap`) unless
`--max-forwards` sets one.
A plugin that needs the full output distribution sets the class attribute `needs_probs = True`
(the core then fills `state.probs` (B, L, V) float32), one that needs the processed logits
`needs_logits = True` (`state.logits`); otherwise reading them raises. WINO's shadow block rides in the same
forward (one call, one counted forward; `workbench.decoding.cache`): `needs_shadow = True` appends it
(`state.shadow_logits` (B, L, V): each block position predicted with itself hidden; refused where the runner or
model cannot append it).

The canvas view: a plugin with `canvas_view = True` (a class or instance attribute) reads and feeds the
whole generation where the forward computes it (a bidirectional model decoded without a KV cache;
`state.canvas_view` says whether this decode does): the core keeps `state.canvas_logits` (B, G, V), the
forward's logits at every generated position, and `embed_state` may return the inputs of the block and of
the `state.after` generated positions after it (Prophet's early commit of later blocks, dInfer's smoothed
inputs of the whole canvas, KLASS's scores across blocks). Elsewhere the plugin runs on the block alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from workbench.decoding.markers import hookspec

if TYPE_CHECKING:
    import torch

    from workbench.models.base import Denoiser
    from workbench.decoding.state import BlockState, Guidance, Promotion, RowResult



@hookspec(firstresult=True)
def fill_block(state: BlockState) -> torch.Tensor | None:
    """Fix some positions of a block before it is decoded (infilling, schema scaffolding).

    Called by the core once per block, before its first forward, for every row of the block.

    Args:
        state: the block's fresh state: every position open; `state.sample_ids` (B,) long and
            `state.context` (B, C) long say whose block it is; `state.start` its offset in the generation.

    Returns:
        (B, L) long: a token id at each position to fix, `workbench.decoding.state.FREE` (-1) at positions to decode;
        or None to defer. Stops at first non-None result. Fixed positions become inactive token positions
        (`state.active` False): no hook can promote, revoke or commit anything else there. A row whose
        every position is fixed has nothing to decode: it is done at once and spends no forward on the block
        (except with a KV cache whose block-start forward carries every row: there it runs that forward).

    Enforced: shape (B, L), integer dtype, values in [0, vocab_size) or FREE, never the mask id.

    Default: None (nothing fixed).
    """


@hookspec(firstresult=True)
def guidance(state: BlockState) -> Guidance | None:
    """Decode the block with classifier-free guidance: name the unconditional context and the scale.

    Called by the core once per block, after `fill_block` and before the block's first forward, for every
    row of the block.

    Args:
        state: the block's fresh state; `state.context` (B, C) long is the conditional context (the
            left-padded prompt, then the committed blocks), `state.start` the block's offset in the generation.

    Returns:
        a `workbench.decoding.state.Guidance(context=..., scale=...)`: every step of the block the core then
        also forwards the same block inputs (those of `embed_state`) against `context` (B, C) long, and the
        step reads u + (scale + 1) * (c - u) from the conditional logits c and the unconditional u, in the
        forward's dtype, before `process_logits`. `nfe` counts a guided step once (one step, as LLaDA's one
        batched call); the unconditional forwards are counted per sample in `RowResult.extras["guidance_forwards"]`.
        None: no guidance. Stops at first non-None result.

    Enforced: a `Guidance`; context of `state.context`'s shape, integer ids in [0, vocab_size); scale a finite
        number >= 0. Models that bring their own forward scheme (DiffusionGemma) refuse guidance.

    Default: none (the core implements no guidance; a run lists this hook among its decisions only when a
        plugin implements it).
    """


@hookspec(firstresult=True)
def embed_state(state: BlockState, model: Denoiser) -> torch.Tensor | None:
    """Build the input embeddings of the current block's positions.

    Called by the core once per refinement step, before the forward, for every row of the current
    block (rows already done are ignored by the core).

    Args:
        state: the block's decoding state. `state.ids` (B, L) long (the mask id, or the current noise token
            on a uniform-state canvas, at open positions), `state.is_mask` (B, L) bool,
            `state.top` / `state.conf` (B, L) long / float32 from the previous forward (on the first
            step of a block: `top` = `ids`, `conf` = 0).
        model: the `Denoiser`; `model.embedding_table()` (V, D); `model.mask_embedding()` (D,) exists only on
            absorbing-state canvases (it raises `ModelInputsDenied` on a uniform-state one).

    Returns:
        (B, L, D) floating tensor in the dtype of `model.embedding_table()`, or None to defer to the
        next implementation. Stops at first non-None result. With the canvas view (`state.canvas_view`) it
        may be (B, L + state.after, D): also the inputs of every generated position after the block, which
        the forward then reads instead of the runner's (mask embeddings, or noise on a uniform canvas).

    Enforced: shape (B, L, D) (or the canvas view's), dtype of the embedding table, finite values of a sane
        size.

    Default: hard embeddings: the input of every position is E(state.ids) (e_mask at open positions of an
        absorbing-state canvas, the noise token's embedding on a uniform-state one).
    """


@hookspec(firstresult=True)
def process_logits(state: BlockState, logits: torch.Tensor) -> torch.Tensor | None:
    """Transform the block's logits before the step reads them (temperature schedules, token bans).

    Called by the core once per refinement step, right after the forward, for the rows that ran it.

    Args:
        state: the block's decoding state (`state.step` already counts this forward).
        logits: (b, L, V) float32 or the model's dtype, the forward's logits of the running rows
            (`state.running`), in row order.

    Returns:
        (b, L, V) floating tensor, the logits `state.top` / `state.conf` / `state.probs` are computed from
        (they are also kept as `state.logits` and fed back to self-conditioning models); or None to defer.
        Stops at first non-None result. It may modify `logits` in place.

    Enforced: shape (b, L, V), floating dtype.

    Default: removes the MASK logit (set to -inf: a committed token is always a real token) when the model
        has a mask token; otherwise the logits unchanged.
    """


@hookspec(firstresult=True)
def revoke(state: BlockState) -> torch.Tensor | None:
    """Choose token positions that go back to open this step (remasking: ReMDM, WINO; renoising).

    Called by the core once per refinement step, after the forward has updated `state.top`, `state.conf`
    (B, L) and `state.prev_top`, before `promote`, for every row of the current block.

    Args:
        state: the block's decoding state; `state.token_positions` (B, L) bool are the revocable positions
            (active token positions of rows still running).

    Returns:
        (B, L) bool, True at each token position to send back to open, or None to defer.
        Stops at first non-None result. The core then marks them open (`state.revoked`), gives them the mask
        id (absorbing) or fresh noise after `promote` (uniform); `promote` may promote them again at once.

    Enforced: shape (B, L), dtype bool, True only at active token positions of rows not done.

    Default: revokes nothing (a promoted position stays a token position).
    """


@hookspec(firstresult=True)
def promote(state: BlockState) -> torch.Tensor | Promotion | None:
    """Choose which open positions become token positions this step, and with which tokens.

    Called by the core once per refinement step, after `revoke`, for every row of the current block.

    Args:
        state: the block's decoding state; `state.is_mask & state.active` are the promotable positions
            (`state.open_masks` drops the rows already done), `state.done` (B,) bool marks rows whose block
            is already finished, `state.rng` draws random tokens reproducibly per sample.

    Returns:
        (B, L) bool, True at each open position to promote (it takes `state.top`); or a
        `workbench.Promotion(positions=..., tokens=..., fallback=...)` (keywords only) to choose the tokens (e.g. sampled)
        or to opt out of the progress fallback for this step; or None to defer.
        Stops at first non-None result. The core then sets `state.ids` at promoted positions and, for any
        row that still has open
        positions but promoted none (unless opted out), promotes its most confident open position with its
        top (progress guarantee; `state.fallback` tells those apart in `state.promoted`).

    Enforced: shape (B, L), dtype bool, True only at active open positions of rows not done; tokens (B, L)
        integer ids in [0, vocab_size), never the mask id, at promoted positions; fallback a bool or (B,) bool.

    Default: promotes nothing (the core's fallback then decodes one token per step).
    """


@hookspec(firstresult=True)
def converge(state: BlockState) -> torch.Tensor | None:
    """Say, per row, whether the current block is final.

    Called by the core once per refinement step, after promotion (`state.is_mask` is updated,
    `state.revoked` / `state.promoted` (B, L) bool hold this step's decisions), for every row of the current
    block.

    Args:
        state: the block's decoding state.

    Returns:
        (B,) bool, True for rows whose block is final, or None to defer. Stops at first non-None result.
        Values for rows already done are ignored. A row also finishes when it reaches the forward cap
        (`DecodeConfig.max_forwards_per_block`), whatever this hook says.

    Enforced: shape (B,), dtype bool.

    Default: True when the row has no active mask position left.
    """


@hookspec(firstresult=True)
def commit(state: BlockState) -> torch.Tensor | None:
    """Return the final token ids of the current block.

    Called by the core once per refinement step in which some row finished (converged or capped); the
    result is used for the rows that finished at this step (`state.finishing` (B,) bool), whose ids
    then become context for later blocks.

    Args:
        state: the block's decoding state.

    Returns:
        (B, L) long token ids, or None to defer. Stops at first non-None result.

    Enforced: shape (B, L), integer dtype, ids in [0, vocab_size) on finishing rows; inactive positions keep
    their ids; never the mask id on a uniform-state canvas. On an absorbing-state canvas the mask id may be
    committed (DMax leaves positions open at the forward cap masked); the core counts such positions per
    sample in `RowResult.extras["unfilled"]`, so an output is never silently partly masked.

    Default: `state.ids`, with any open position left (forward cap) filled by its current top.
    """


@hookspec
def on_step_end(state: BlockState) -> None:
    """Observe the state after a refinement step.

    Called by the core once per refinement step, after commit, for every row of the current block.

    Args:
        state: the block's decoding state; `state.revoked`, `state.promoted`, `state.fallback` (B, L) bool,
            `state.converged`, `state.finishing` (B,) bool describe what this step decided.

    Returns:
        Nothing; results are ignored and every implementation is called.

    Default: none.
    """


@hookspec
def on_block_end(state: BlockState, committed: torch.Tensor) -> None:
    """Observe a finished block.

    Called by the core once per block, after every row of the block is done.

    Args:
        state: the block's final decoding state; `state.steps` (B,) long forwards per row.
        committed: (B, L) long, the committed ids of the block per row.

    Returns:
        Nothing; results are ignored and every implementation is called.

    Default: none.
    """


@hookspec
def on_generation_end(results: list[RowResult]) -> None:
    """Observe the results of a `generate` call.

    Called by the core once per `generate` call, after the last block.

    Args:
        results: one `RowResult` per prompt, in prompt order; an observer may add per-sample values to
            `results[i].extras` (JSON data, joined on `results[i].sample_id`), which `evaluate` stores.

    Returns:
        Nothing; results are ignored and every implementation is called.

    Default: none.
    """
