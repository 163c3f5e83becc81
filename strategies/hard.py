"""Hard-token refinement (OPUT without SPD; DMax's ablation).

Per block, positions are mask positions or token positions; each step:
1. promote the longest run of mask positions starting at the leftmost one with conf >= tau_dec, or the
   leftmost alone when that run is empty (`contiguous=False`: every mask position with conf >= tau_dec,
   the ablation's non-contiguous variant, with the same leftmost fallback);
2. every token position takes the current step's top (re-predicted every step, so it can be revised);
3. converge when nothing changed this step or every active position has conf >= tau_acc (see
   `plugins.convergence.stable` for the reading of "changed"); commit the current tops of the block (of its
   token positions only with `fill_at_cap=False`);
4. next input: e_mask at mask positions, E(top) at token positions.

Defaults (DMax, math): tau_dec = 0.5, tau_acc = 0.9; the cap of B forwards per block is the core's.
With contiguous promotion the mask positions always form a contiguous suffix of the block. `contiguous=True`
(default) is DMax's decoding rule; `contiguous=False` is the paper's ablation variant.

Reference switches (`--set name=value`), DMax's behaviour one setting away:
- `fill_at_cap` (default True): mask positions still open when a block ends get their current top. A block
  ends with open positions at the forward cap, or when it converges by the confidence rule with masks left
  (every position >= tau_acc but the run from the leftmost mask broken below tau_dec: only when
  tau_dec > tau_acc). False is DMax's (`decode_uniform` stops and leaves every position it has not promoted
  MASK, in both cases): they stay masked in the output, and the core reports them per sample as `unfilled`.
- `mask_logit` (default `remove`): the core removes the MASK logit before the softmax. `keep` is DMax's:
  the softmax includes MASK, so a position's top may be MASK (its confidence counts as any other).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.convergence import stable_or_confident
from plugins.embedders import hard_embeddings
from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from plugins.promotion import above_threshold, contiguous_prefix
from workbench import BlockState, Denoiser, hookimpl, unit_interval


@attrs.frozen(eq=False, kw_only=True)
class Hard:
    """DMax refinement loop with hard token inputs."""

    name: ClassVar[str] = "hard"
    main_threshold: ClassVar[str] = "tau_dec"

    tau_dec: float = attrs.field(default=0.5, validator=unit_interval)
    tau_acc: float = attrs.field(default=0.9, validator=unit_interval)
    contiguous: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    fill_at_cap: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def embed_state(self, state: BlockState, model: Denoiser) -> torch.Tensor:
        return hard_embeddings(state, model, state.top)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        if self.contiguous:
            return contiguous_prefix(state, self.tau_dec)
        return above_threshold(state, self.tau_dec)

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        return stable_or_confident(state, self.tau_acc)

    @hookimpl
    def commit(self, state: BlockState) -> torch.Tensor:
        """Called by the core for the rows that finish this step (converged or at the cap); returns the
        block's final ids (B, L): the current top at token positions, and at the positions still open the
        current top (`fill_at_cap`, default) or their mask id (DMax: whatever ended the block)."""
        revisable = state.active if self.fill_at_cap else state.active & ~state.is_mask
        return torch.where(revisable, state.top, state.ids)


STRATEGY = Hard
