"""Logit rules strategies share: what happens to the MASK logit before the softmax.

The core's default `process_logits` removes it (MASK is never a prediction, and confidences are
renormalised over real tokens). DMax's and dInfer's reference code keep it in the softmax; strategies offer
that as `mask_logit="keep"` so the reference behaviour is one `--set` away.
"""

from __future__ import annotations

import torch

from workbench.decoding.defaults import remove_mask_logit

MASK_LOGIT_RULES = ("remove", "keep")


def mask_logit_rule(rule: str, state, logits: torch.Tensor) -> torch.Tensor:
    """`process_logits` answer for a `mask_logit` rule: the logits untouched for `keep` (DMax, dInfer), the
    MASK logit removed for `remove` (the core's default, done here so the strategy answers the hook)."""
    return logits if rule == "keep" else remove_mask_logit(state, logits)


def softmax64(state, logits: torch.Tensor, rule: str) -> torch.Tensor:
    """float64 distributions (..., V) of `logits` under a MASK-logit rule: the LLaDA-family reference samplers
    (WINO, KLASS) compute confidences as `F.softmax(logits.to(torch.float64))`, so thresholds compare alike."""
    logits = logits.double()
    if rule == "remove" and state.mask_id is not None:
        logits = logits.index_fill(-1, torch.tensor([state.mask_id], device=logits.device), float("-inf"))
    return logits.softmax(-1)
