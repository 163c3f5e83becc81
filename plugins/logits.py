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
