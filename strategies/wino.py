"""WINO-style revocable decoding: draft wide with a low threshold, then send back tokens that lost confidence.

Paper: Feng Hong, Geng Yu, Yushi Ye, Haicheng Huang, Huangjie Zheng, Ya Zhang, Yanfeng Wang, Jiangchao Yao,
"Wide-In, Narrow-Out: Revokable Decoding for Efficient and Effective DLLMs" (WINO, arXiv:2507.18578).
Each step WINO unmasks every masked position whose confidence clears a low threshold (wide in), then
re-checks the tokens decoded earlier and re-masks those whose confidence under the new forward fell below a
high threshold (narrow out), so early mistakes made by aggressive parallel drafting can be taken back.

Here, with the workbench's `revoke` and `promote` hooks:
- `revoke`: token positions whose current token has p(token) < tau_out under this step's forward go back
  to open (the mask id); a token just promoted is never revoked in the same step (revoke runs first).
- `promote`: every open position with conf >= tau_in, and always the most confident one; a position revoked
  this step is not re-promoted at once (it waits a step, as in WINO, so it is re-predicted masked).

Deliberate difference: WINO verifies on a "shadow block" (a masked copy of the block appended to the input,
so a token is judged without seeing itself); here the verification reads the same forward, in which each
token position is fed its own token. A model that copies its input rates its own tokens high, so this
revokes less than WINO would. The forward cap still ends every block (oscillation cannot run forever).

    workbench run --strategy threshold --plugin examples/plugins/wino.py --trainer base
    workbench check-plugin examples/plugins/wino.py
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from workbench import BlockState, hookimpl, unit_interval


def lost_confidence(state: BlockState, tau_out: float) -> torch.Tensor:
    """Token positions whose current token has probability < tau_out now. (B, L) bool."""
    current = state.probs.gather(-1, state.ids[..., None]).squeeze(-1)  # (B, L) p(token at the position)
    return state.token_positions & (current < tau_out)


def wide_in(state: BlockState, tau_in: float) -> torch.Tensor:
    """Open positions (not revoked this step) with conf >= tau_in, and each row's most confident one."""
    open_ = state.open_masks & ~state.revoked
    scores = state.conf.masked_fill(~open_, -1.0)
    best = torch.zeros_like(open_).scatter_(1, scores.argmax(-1, keepdim=True), open_.any(-1, keepdim=True))
    return (open_ & (state.conf >= tau_in)) | best


@attrs.frozen(eq=False, kw_only=True)
class Wino:
    """`promote` with a low threshold (wide in) + `revoke` below a high threshold (narrow out)."""

    needs_probs: ClassVar[bool] = True  # p(current token) needs the full distribution
    claims: ClassVar[tuple[str, ...]] = ()  # revokes tokens: neither monotone nor a contiguous suffix

    tau_in: float = attrs.field(default=0.6, validator=unit_interval)  # a position is drafted above this
    tau_out: float = attrs.field(default=0.9, validator=unit_interval)  # a token is kept above this

    @hookimpl
    def revoke(self, state: BlockState) -> torch.Tensor:
        return lost_confidence(state, self.tau_out)

    @hookimpl
    def promote(self, state: BlockState) -> torch.Tensor:
        return wide_in(state, self.tau_in)


STRATEGY = Wino
