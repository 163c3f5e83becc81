"""Credit decoding (dInfer's `CreditThresholdParallelDecoder`): the threshold rule on credit-fused logits.

dInfer (Ma et al. 2025, arXiv:2510.08666; github.com/inclusionAI/dInfer at fce4e32,
`python/dinfer/decoding/parallel_strategy.py`). Per block, a credit matrix C (B, L, V) remembers which token
each open position kept predicting: at every forward C decays by `decay_beta` (not at the block's first),
then C[b, l, top1] += p_top1 ** `boost_gamma` at the positions open at this forward's input. The step reads

    fused = logits + credit_alpha * log(1 + C)

and promotes with dInfer's threshold rule (`threshold`'s): every open position with conf >= min(tau,
max_conf - margin), conf = softmax(fused)[argmax fused]. So a token that keeps winning a position gains
confidence there and is decoded sooner. The block ends when no open position is left.

Defaults: tau = 0.9 (dInfer's eval and benchmark default), credit_alpha 0.7, boost_gamma 0.2, decay_beta 0.8
(the class defaults). `--tau` sets tau. `mask_logit=keep` is dInfer's softmax (MASK kept, a MASK argmax
never promoted, no progress fallback); the default `remove` takes MASK out before the credit is computed.

Deliberate difference: dInfer's decoder keeps the matrices of a generation that stopped at an EOS block and
reuses them for the next request of the same prompt length; here C lives in the block's stash.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from plugins.promotion import DINFER_MARGIN, threshold_set
from workbench import BlockState, Promotion, StashKey, hookimpl, unit_interval

# Per block: the credit matrix C (B, L, V) float32 of the block's rows (index i = row i of the block).
CREDIT = StashKey[torch.Tensor]()


def fuse_credit(credit: torch.Tensor, logits: torch.Tensor, open_: torch.Tensor, *, alpha: float, gamma: float,
                beta: float, decay: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward's credit update and fused logits: (new credit (n, L, V) float32, fused (n, L, V)).

    credit: (n, L, V) float32, the rows' matrix before this forward; logits: (n, L, V); open_: (n, L) bool,
    positions open at this forward's input; decay: False at the block's first forward."""
    if decay:
        credit = credit * beta
    top1_p, top1 = logits.float().softmax(-1).max(-1)  # (n, L)
    boost = top1_p.pow(gamma) * open_.float()  # p_top1 ** gamma where open, 0 elsewhere
    credit = credit.scatter_add(2, top1[..., None], boost[..., None])
    return credit, logits + alpha * torch.log(credit + 1)  # log(C + 1) as dInfer writes it (not log1p: bits)


@attrs.frozen(eq=False, kw_only=True)
class Credit:
    """dInfer's credit decoding: the threshold rule on logits fused with each position's decayed credit."""

    name: ClassVar[str] = "credit"
    main_threshold: ClassVar[str] = "tau"

    tau: float = attrs.field(default=0.9, validator=unit_interval)
    credit_alpha: float = attrs.field(default=0.7, validator=[attrs.validators.instance_of((int, float)),
                                                              attrs.validators.ge(0.0)])
    boost_gamma: float = attrs.field(default=0.2, validator=[attrs.validators.instance_of((int, float)),
                                                             attrs.validators.ge(0.0)])
    decay_beta: float = attrs.field(default=0.8, validator=unit_interval)
    margin: float = attrs.field(default=DINFER_MARGIN, validator=unit_interval)
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core once per step, right after the forward, for the running rows (b of the block's
        B). Returns the fused logits (b, L, V): the core's top / conf are read from them, as dInfer's are."""
        logits = mask_logit_rule(self.mask_logit, state, logits)
        if state.step == 1:  # the block's first forward: a fresh matrix, no decay
            state.stash[CREDIT] = torch.zeros(state.batch_size, state.length, logits.shape[-1],
                                              dtype=torch.float32, device=logits.device)
        credit = state.stash[CREDIT]
        running = state.running
        every = logits.shape[0] == state.batch_size
        open_ = state.is_mask & state.active  # open at this forward's input (promotion comes later)
        mine, fused = fuse_credit(credit if every else credit[running], logits, open_ if every else open_[running],
                                  alpha=self.credit_alpha, gamma=self.boost_gamma, beta=self.decay_beta,
                                  decay=state.step > 1)
        state.stash[CREDIT] = mine if every else credit.index_put((running,), mine)
        return fused

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor | Promotion:
        """Called by the core once per step after `revoke`. dInfer's threshold rule on the fused confidences;
        under `mask_logit=keep` a MASK argmax is never promoted and there is no progress fallback."""
        if self.mask_logit == "keep" and state.mask_id is not None:
            candidates = state.open_masks & (state.top != state.mask_id)
            return Promotion(positions=threshold_set(state, self.tau, self.margin, candidates), fallback=False)
        return threshold_set(state, self.tau, self.margin)


STRATEGY = Credit
