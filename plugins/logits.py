"""Logit rules strategies share: what happens to the MASK logit before the softmax.

The core's default `process_logits` removes it (MASK is never a prediction, and confidences are
renormalised over real tokens). DMax's and dInfer's reference code keep it in the softmax; strategies offer
that as `mask_logit="keep"` so the reference behaviour is one `--set` away.
"""

from __future__ import annotations

import torch

MASK_LOGIT_RULES = ("remove", "keep")


def keep_mask_logit(rule: str, logits: torch.Tensor) -> torch.Tensor | None:
    """`process_logits` answer for a `mask_logit` rule: the logits untouched for `keep`, None for `remove`
    (None defers to the core's default, which removes the MASK logit)."""
    return logits if rule == "keep" else None
