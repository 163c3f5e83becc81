"""Iteration smoothing (dInfer's `IterSmoothDiffusionLLM`): soft inputs at open positions and a threshold
that relaxes over the first forwards.

dInfer (Ma et al. 2025, arXiv:2510.08666, "soft diffusion iteration"; github.com/inclusionAI/dInfer at
fce4e32, `python/dinfer/decoding/generate_uniform.py`, `IterationSmooth`, and `H2Embed` in its MoE model
files). Forwards are counted per generation (n = 0, 1, ... over all blocks). Forward n:

- reads inputs where every open position holds e_mask + w(n-1) * softmax(logits_{n-1}) @ E (the previous
  forward's distribution at that position mixed into the mask embedding; the generation's first forward reads
  plain e_mask), token positions E(token); w(n) = min(cont_weight_init + cont_weight_growth * n, cont_weight);
- promotes with dInfer's threshold rule (as `threshold`) at thr(n) = max(1 - threshold_decay * n, tau).

Defaults: the class's cont_weight 0.3, cont_weight_init 0.15, cont_weight_growth 0.02, threshold_decay 0.02,
and tau 0.9 (dInfer's eval default threshold). `--tau` sets tau, the floor of the threshold schedule.
`mask_logit=keep` is dInfer's (MASK in the softmax and in the smoothed distribution; a MASK argmax is never
promoted; no progress fallback).

Where dInfer runs it (a bidirectional model, no KV cache) the workbench's canvas view gives what dInfer
gives: the positions after the block are smoothed too, and each block's first forward reads the previous
block's last forward; the transcripts match dInfer's engine token for token. On a block-causal model or
under a KV cache the block is smoothed alone and its first forward reads plain inputs.

Deliberate difference: the forward counter is per sample; dInfer's counts the batch's forwards (rows that
finished a block keep being forwarded), so there a row's schedule depends on its batch from the second
block on.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from plugins.promotion import DINFER_MARGIN, threshold_set
from workbench import BlockState, Promotion, StashKey, hookimpl, non_negative, unit_interval

# Forwards each row (by prompt index, `state.rows`) spent in the blocks before the current one.
EARLIER = StashKey[dict]()
# With the canvas view: each row's logits of every generated position at its last forward of the previous
# block, (G, V), which smooth the next block's first inputs.
LAST_CANVAS = StashKey[dict]()


@attrs.frozen(eq=False, kw_only=True)
class IterSmooth:
    """dInfer's iteration smoothing with its threshold decoder."""

    name: ClassVar[str] = "iter-smooth"
    main_threshold: ClassVar[str] = "tau"
    needs_logits: ClassVar[bool] = True  # the previous forward's logits smooth the next inputs
    canvas_view: ClassVar[bool] = True  # where the forward computes them, smooth the positions after the block too

    tau: float = attrs.field(default=0.9, validator=unit_interval)
    cont_weight: float = attrs.field(default=0.3, validator=non_negative)
    cont_weight_init: float = attrs.field(default=0.15, validator=non_negative)
    cont_weight_growth: float = attrs.field(default=0.02, validator=non_negative)
    threshold_decay: float = attrs.field(default=0.02, validator=non_negative)
    margin: float = attrs.field(default=DINFER_MARGIN, validator=unit_interval)
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    def forward_index(self, state: BlockState) -> list[int]:
        """Per row, the generation-wide index of the latest forward (-1 before the first)."""
        earlier = state.stash.setdefault(EARLIER, {})
        return [earlier.get(row, 0) + steps - 1 for row, steps in zip(state.rows.tolist(), state.steps.tolist())]

    def weight(self, n: int) -> float:
        return min(self.cont_weight_init + self.cont_weight_growth * n, self.cont_weight)

    def threshold(self, n: int) -> float:
        return max(1 - n * self.threshold_decay, self.tau)

    @hookimpl
    def embed_state(self, state: BlockState, model) -> torch.Tensor:
        """Called by the core before each forward. Open positions: e_mask + w * softmax(previous logits) @ E
        (dInfer's H2Embed at temperature 1), token positions E(id). With the canvas view the positions after
        the block too, and a block's first forward from the previous block's last one, as dInfer's whole-canvas
        inputs; without it the block's first forward is plain (there is no previous forward of its positions)."""
        table, e_mask = model.embedding_table(), model.mask_embedding()  # (V, D), (D,)
        hard = torch.where(state.is_mask[..., None], e_mask, table[state.ids])  # (B, L, D)
        if state.canvas_view:
            previous = self.previous_canvas(state)  # (B, G, V) or None at the generation's first forward
            after = e_mask.expand(state.batch_size, state.after, table.shape[1])  # (B, A, D), all open
            if previous is None:
                return torch.cat([hard, after], dim=1)
            ahead = previous[:, state.start:]  # (B, L + A, V) the block and every position after it
            open_ = torch.cat([state.is_mask, torch.ones_like(state.is_mask[:, :1]).expand(-1, state.after)], 1)
            return self.smooth(state, torch.cat([hard, after], dim=1), open_, ahead, table, e_mask)
        if state.step == 0:
            return hard
        return self.smooth(state, hard, state.is_mask, state.logits, table, e_mask)

    def previous_canvas(self, state: BlockState) -> torch.Tensor | None:
        """(B, G, V) logits of the rows' latest forward at every generated position (processed as the block's)."""
        if state.step > 0:
            return self.mask_rule(state, state.canvas_logits)
        last = state.stash.get(LAST_CANVAS, {})
        rows = state.rows.tolist()
        if not all(row in last for row in rows):
            return None
        return torch.stack([last[row] for row in rows])

    def mask_rule(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """The canvas logits with the block's MASK rule (`mask_logit`), out of place."""
        return mask_logit_rule(self.mask_logit, state, logits.clone())

    def smooth(self, state: BlockState, hard: torch.Tensor, open_: torch.Tensor, logits: torch.Tensor,
               table: torch.Tensor, e_mask: torch.Tensor) -> torch.Tensor:
        """`hard` (B, P, D) with every open position replaced by e_mask + w * softmax(logits) @ E."""
        w = torch.tensor([self.weight(n) for n in self.forward_index(state)], dtype=table.dtype,
                         device=table.device)[:, None, None]  # (B, 1, 1): Python floats, as dInfer's
        soft = logits.to(table.dtype).softmax(-1) @ table  # (B, P, D) expected input embedding
        return torch.where(open_[..., None], w * soft + e_mask, hard)

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward: the MASK rule (`mask_logit`)."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor | Promotion:
        """Called by the core once per step after `revoke`: dInfer's threshold rule at thr(n) per row."""
        tau = torch.tensor([self.threshold(n) for n in self.forward_index(state)], dtype=state.conf.dtype,
                           device=state.conf.device)[:, None]  # (B, 1)
        if self.mask_logit == "keep" and state.mask_id is not None:
            candidates = state.open_masks & (state.top != state.mask_id)
            return Promotion(positions=threshold_set(state, tau, self.margin, candidates), fallback=False)
        return threshold_set(state, tau, self.margin)

    @hookimpl
    def on_block_end(self, state: BlockState, committed: torch.Tensor) -> None:
        """Called by the core once per block: add the block's forwards to each row's count; with the canvas
        view keep each row's last logits of every generated position for the next block's first inputs."""
        earlier = state.stash.setdefault(EARLIER, {})
        for row, steps in zip(state.rows.tolist(), state.steps.tolist()):
            earlier[row] = earlier.get(row, 0) + steps
        if state.canvas_view:
            last = state.stash.setdefault(LAST_CANVAS, {})
            canvas = self.mask_rule(state, state.canvas_logits)
            for i, row in enumerate(state.rows.tolist()):
                last[row] = canvas[i]


STRATEGY = IterSmooth
