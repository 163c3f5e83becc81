"""Promotion rules: which mask positions become token positions this step.

Each rule is a function of the block state returning a (B, L) bool tensor that is True only at
`state.open_masks` (active mask positions of rows still running), vectorised over the batch: no Python
loop over positions. The plugin classes at the bottom wrap one rule each as a `promote` implementation.
"""

from __future__ import annotations

import attrs
import torch

from workbench import BlockState, hookimpl, unit_interval


def most_confident(state: BlockState, open_: torch.Tensor | None = None) -> torch.Tensor:
    """The single most confident open mask position of each row that has one. (B, L) bool."""
    open_ = state.open_masks if open_ is None else open_
    scores = state.conf.masked_fill(~open_, -1.0)  # conf >= 0, so a closed position never wins
    out = torch.zeros_like(open_)
    out.scatter_(1, scores.argmax(-1, keepdim=True), open_.any(-1, keepdim=True))
    return out


def leftmost(state: BlockState, open_: torch.Tensor | None = None) -> torch.Tensor:
    """The leftmost open mask position of each row that has one. (B, L) bool."""
    open_ = state.open_masks if open_ is None else open_
    out = torch.zeros_like(open_)
    out.scatter_(1, open_.to(torch.uint8).argmax(-1, keepdim=True), open_.any(-1, keepdim=True))
    return out


# dInfer's threshold rule: every candidate with conf >= min(tau, max_conf - DINFER_MARGIN) is committed.
DINFER_MARGIN = 1e-5


def threshold_set(state: BlockState, tau: float, margin: float = DINFER_MARGIN,
                  open_: torch.Tensor | None = None) -> torch.Tensor:
    """Fast-dLLM / dInfer: every open position with conf >= min(tau, max_conf - margin), max_conf the row's
    largest open confidence. So every position >= tau, and always the most confident one together with all
    within `margin` of it (margin 0: exact ties of the maximum). `open_`: the candidates (default open_masks)."""
    open_ = state.open_masks if open_ is None else open_
    best = state.conf.masked_fill(~open_, float("-inf")).amax(-1, keepdim=True)  # (B, 1), -inf without open
    return open_ & (state.conf >= (best - margin).clamp(max=tau))


def factor_rule(state: BlockState, factor: float) -> torch.Tensor:
    """Fast-dLLM factor variant: sort open positions by conf; rank n passes if conf >= 1 - f / (n + 1);
    promote the longest passing prefix (rank 1 always passes). As the reference loop does, when only the
    last-ranked of M >= 2 open positions fails, all M are promoted (its `top_i == len(threshs) - 1` case)."""
    open_ = state.open_masks
    scores = state.conf.masked_fill(~open_, -1.0)
    sorted_conf, order = scores.sort(dim=-1, descending=True, stable=True)  # (B, L)
    rank = torch.arange(1, open_.shape[1] + 1, device=open_.device, dtype=torch.float32)
    passes = (sorted_conf >= 1.0 - factor / (rank + 1.0)) & (sorted_conf >= 0)
    passes[:, 0] = sorted_conf[:, 0] >= 0  # rank 1 always passes when the row has an open position
    prefix = passes.long().cumprod(-1)  # (B, L) 1 on the passing prefix
    n_open = open_.sum(-1, keepdim=True)  # (B, 1)
    quirk = prefix.sum(-1, keepdim=True) == n_open - 1  # every rank but the last passes
    prefix = prefix.bool() | (quirk & (rank <= n_open))
    out = torch.zeros_like(open_)
    return out.scatter_(1, order, prefix)


def span_first_maxima(state: BlockState, open_: torch.Tensor | None = None) -> torch.Tensor:
    """The first most confident position of each maximal run of consecutive open positions. (B, L) bool."""
    open_ = state.open_masks if open_ is None else open_
    b, length = open_.shape
    starts = open_ & ~torch.nn.functional.pad(open_, (1, 0))[:, :-1]  # first position of each span
    span = torch.where(open_, starts.long().cumsum(-1), 0)  # (B, L) span id, 0 = not open
    scores = state.conf.masked_fill(~open_, -1.0)
    span_max = torch.full((b, length + 1), -1.0, device=open_.device, dtype=scores.dtype)
    span_max.scatter_reduce_(1, span, scores, reduce="amax")
    is_max = open_ & (scores == span_max.gather(1, span))
    # Ties: keep only the first maximum of each span (count maxima seen so far within the span).
    seen = is_max.long().cumsum(-1)
    before = torch.zeros(b, length + 1, dtype=torch.long, device=open_.device)
    before.scatter_reduce_(1, torch.where(starts, span, 0), torch.where(starts, seen - is_max.long(), 0),
                           reduce="amax")
    return is_max & (seen - before.gather(1, span) == 1)


def span_maxima(state: BlockState, low: float, high: float) -> torch.Tensor:
    """Hierarchy-dLLM: split the open mask positions into maximal contiguous spans; take each span's most
    confident position if conf > low (strict), every position with conf > high (strict), and always the
    block's most confident open position."""
    open_ = state.open_masks
    return ((span_first_maxima(state, open_) & (state.conf > low)) | (open_ & (state.conf > high))
            | most_confident(state, open_))


def top_up(state: BlockState, chosen: torch.Tensor, need: torch.Tensor, open_: torch.Tensor | None = None
           ) -> torch.Tensor:
    """`chosen` (B, L) bool with the most confident other open positions added until each row has `need`
    (B,) long chosen (or every open position). Ties go to the leftmost."""
    open_ = state.open_masks if open_ is None else open_
    scores = state.conf.masked_fill(~open_ | chosen, float("-inf"))  # the candidates still available
    order = scores.argsort(dim=-1, descending=True, stable=True)  # (B, L) most confident first
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device)
                                            .expand_as(order).contiguous())  # (B, L) each position's rank
    missing = (need - chosen.sum(-1)).clamp(min=0)  # (B,)
    return chosen | (open_ & ~chosen & (rank < missing[:, None]))


def contiguous_prefix(state: BlockState, tau: float) -> torch.Tensor:
    """DMax SPD: the longest run of open mask positions starting at the leftmost one whose conf >= tau;
    if that run is empty, the leftmost open position alone."""
    open_ = state.open_masks
    first = open_.to(torch.uint8).argmax(-1, keepdim=True)  # (B, 1) leftmost open position (0 if none)
    pos = torch.arange(open_.shape[1], device=open_.device)
    # Positions before the leftmost never break the run; from it on, the run lasts while positions are
    # open and confident (cummin: True until the first False). The leftmost is taken in any case.
    ok = (open_ & (state.conf >= tau)) | (pos < first)  # (B, L)
    return (ok.cummin(-1).values | (pos == first)) & open_


def above_threshold(state: BlockState, tau: float) -> torch.Tensor:
    """DMax ablation's non-contiguous promotion: every open mask position with conf >= tau; if none,
    the leftmost open position."""
    open_ = state.open_masks
    chosen = open_ & (state.conf >= tau)
    fallback = leftmost(state, open_) & ~chosen.any(-1, keepdim=True)
    return chosen | fallback


# -- plugin classes: one rule each, combinable with any strategy ------------------------------------------


def top_k_rows(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: the k[b] highest scores of each row b, never a -inf one; ties in position order (where
    `torch.topk`, which the reference samplers call, leaves their order unspecified)."""
    order = scores.sort(dim=-1, descending=True, stable=True).indices  # (B, L)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device)
                                            .expand_as(order).contiguous())
    return (rank < k[:, None]) & (scores > float("-inf"))


@attrs.frozen(eq=False, kw_only=True)
class ThresholdPromotion:
    """`promote` = Fast-dLLM / dInfer threshold set."""

    tau: float = attrs.field(default=0.95, validator=unit_interval)
    margin: float = attrs.field(default=DINFER_MARGIN, validator=attrs.validators.ge(0))

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return threshold_set(state, self.tau, self.margin)


@attrs.frozen(eq=False, kw_only=True)
class FactorPromotion:
    """`promote` = Fast-dLLM factor rule."""

    factor: float = attrs.field(default=1.0, validator=attrs.validators.gt(0.0))

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return factor_rule(state, self.factor)


@attrs.frozen(eq=False, kw_only=True)
class SpanMaximaPromotion:
    """`promote` = Hierarchy-dLLM span maxima."""

    low_threshold: float = attrs.field(default=0.62, validator=unit_interval)
    threshold: float = attrs.field(default=0.92, validator=unit_interval)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return span_maxima(state, self.low_threshold, self.threshold)


@attrs.frozen(eq=False, kw_only=True)
class ContiguousPromotion:
    """`promote` = DMax contiguous prefix."""

    tau_dec: float = attrs.field(default=0.5, validator=unit_interval)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return contiguous_prefix(state, self.tau_dec)

