"""Hard-token refinement (OPUT without SPD; DMax's ablation).

Per block, positions are mask positions or token positions; each step:
1. promote the longest run of mask positions starting at the leftmost one with conf >= tau_dec, or the
   leftmost alone when that run is empty (`contiguous=False`: every mask position with conf >= tau_dec,
   the ablation's non-contiguous variant, with the same leftmost fallback);
2. every token position takes the current step's top (re-predicted every step, so it can be revised);
3. converge when nothing changed this step or every active position has conf >= tau_acc (see
   `plugins.convergence.stable` for the reading of "changed"); commit the current tops of the block;
4. next input: e_mask at mask positions, E(top) at token positions.

Defaults (DMax, math): tau_dec = 0.5, tau_acc = 0.9; the cap of B forwards per block is the core's.
With contiguous promotion the mask positions always form a contiguous suffix of the block. `contiguous=True`
(default) is DMax's decoding rule; `contiguous=False` is the paper's ablation variant.

Reference switches (`--set name=value`), DMax's behaviour one setting away:
- `fill_at_cap` (default True): at the forward cap, mask positions left get their current top. False is
  DMax's: a row that reaches the cap without converging keeps them masked in the output (the core reports
  them per sample as `unfilled`); a row that converges commits the tops of its whole block either way.
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
        revisable = state.active
        if not self.fill_at_cap:  # DMax: a row that ends at the forward cap without converging keeps its masks
            revisable = revisable & (~state.is_mask | state.converged[:, None])
        return torch.where(revisable, state.top, state.ids)


STRATEGY = Hard
