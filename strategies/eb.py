"""EB-Sampler: entropy-bounded unmasking (Ben-Hamu, Gat, Severo, Nolte, Karrer, 2025, arXiv:2505.24857).

Each step, order the block's open positions by an error proxy (lowest entropy first by default) and promote
the longest prefix U of that order whose entropies satisfy the paper's bound

    sum_{l in U} H(p_l) - max_{l in U} H(p_l) <= gamma

(the left side bounds the joint-dependence error of decoding U in one forward). It is 0 for one position, so
at least one position is promoted per step; it never decreases along the order, so the admitted set is a
prefix. gamma = 0 decodes one token per step unless several are certain; a larger gamma, more per forward.
Promoted tokens are final; the block ends when no open position is left (the core's `converge`).

Reference: the EB-Sampler's authors published no code. The workbench follows the public implementation the
field compares against, PC-Sampler's `generate_with_eb_sampler` (github.com/NEUIR/PC-Sampler @ 8b106b0,
`src/generate.py`; golden transcripts in `tests/reference/eb/`), and is tested against steps computed by
hand from the bound. Like it: entropy as `torch.distributions.Categorical(logits=...).entropy()` of the
step's logits, `k` = the number of sorted prefixes within the bound, at least 1, float32 sums.

Defaults: gamma = 0.01 (PC-Sampler's EB runs), proxy = entropy (the reference's; `confidence` and `margin`
are the paper's other proxies, the bound always sums entropies), mask_logit = remove.

Reference switches (`--set name=value`):
- `mask_logit=keep`: the softmax (and the entropies) include MASK; a selected position whose argmax is MASK
  is not promoted (the reference writes MASK back: it stays masked) and counts in the prefix.
- `temperature=T`: tokens drawn as LLaDA's Gumbel noise draws them, with the reference's random stream
  (`plugins.gumbel`); `DecodeConfig.temperature` must then stay 0.
- One block of the whole generation (`--block-size` = `--gen-length`) is the reference's canvas; a smaller
  block applies the bound within each block (semi-autoregressive, a workbench extension).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.gumbel import canvas_gumbel_argmax
from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from workbench import BlockState, Promotion, UnsupportedSettings, hookimpl, non_negative

PROXIES = ("entropy", "confidence", "margin")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(logits)) in nats, (B, L, V) -> (B, L), in the logits' dtype, computed exactly as the reference
    computes it (`Categorical(logits=...).entropy()`: normalised logits clamped at the dtype's minimum, so a
    -inf logit contributes 0)."""
    return torch.distributions.Categorical(logits=logits).entropy()


def error_proxy(proxy: str, ent: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """(B, L) sort key, lowest = decode first: the entropy, or minus the top-1 probability / top-1 - top-2 margin."""
    if proxy == "entropy":
        return ent
    top2 = probs.topk(2, dim=-1).values  # (B, L, 2)
    return -top2[..., 0] if proxy == "confidence" else -(top2[..., 0] - top2[..., 1])


def entropy_bounded(open_: torch.Tensor, key: torch.Tensor, ent: torch.Tensor, gamma: float) -> torch.Tensor:
    """The EB set (B, L) bool: per row, the first k open positions in `key` order (ascending, ties by
    position), k = #{i : sum_{j<=i} H_(j) - max_{j<=i} H_(j) <= gamma} over the open positions, at least 1."""
    key = key.masked_fill(~open_, float("inf"))  # closed positions sort last
    order = key.argsort(dim=-1, stable=True)  # (B, L) positions, decode-first first
    h = ent.gather(1, order).masked_fill(~open_.gather(1, order), 0.0)  # (B, L) entropies in that order
    slack = h.cumsum(-1) - h.cummax(-1).values  # the bound's left side over each prefix
    n_open = open_.sum(-1, keepdim=True)  # (B, 1)
    rank = torch.arange(open_.shape[1], device=open_.device)  # (L,)
    k = ((slack <= gamma) & (rank < n_open)).sum(-1, keepdim=True).clamp(min=1)  # (B, 1), as the reference counts
    admitted = (rank < k) & (rank < n_open)  # (B, L) in sorted order
    return torch.zeros_like(open_).scatter_(1, order, admitted)


@attrs.frozen(eq=False, kw_only=True)
class EntropyBounded:
    """EB-Sampler: promote the longest error-proxy prefix of open positions within the entropy budget."""

    name: ClassVar[str] = "eb"
    main_threshold: ClassVar[str] = "gamma"  # an entropy budget in nats, not a probability (see docs)
    # `workbench ablate`'s default sweep of the main knob (entropy budgets in nats, careful to parallel).
    tau_grid: ClassVar[tuple[float, ...]] = (0.001, 0.01, 0.1, 1.0)
    needs_logits: ClassVar[bool] = True  # entropies from the processed logits, as the reference computes them
    claims: ClassVar[tuple[str, ...]] = ("monotonicity",)  # promoted tokens are never revised

    gamma: float = attrs.field(default=0.01, validator=non_negative)
    proxy: str = attrs.field(default="entropy", validator=attrs.validators.in_(PROXIES))
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))
    temperature: float = attrs.field(default=0.0, validator=non_negative)

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward; returns the logits with the `mask_logit` rule applied."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core once per step; returns the EB set of every running row with its tokens (the
        argmax, or LLaDA's Gumbel sample) and no progress fallback (the set is never empty by itself)."""
        if self.temperature > 0 and state.config.temperature > 0:
            raise UnsupportedSettings("eb: --temperature and --set temperature both sample; give one (the strategy's "
                             "is LLaDA's Gumbel draw, the reference's stream)")
        logits = state.logits  # (B, L, V)
        ent = entropy(logits)
        key = ent if self.proxy == "entropy" else error_proxy(self.proxy, ent, logits.softmax(-1))
        chosen = entropy_bounded(state.open_masks, key, ent, self.gamma)
        tokens = canvas_gumbel_argmax(state, logits, self.temperature) if self.temperature > 0 else state.top
        if self.mask_logit == "keep" and state.mask_id is not None:
            chosen = chosen & (tokens != state.mask_id)  # the reference writes MASK back: the position stays open
        return Promotion(positions=chosen, tokens=tokens, fallback=False)


STRATEGY = EntropyBounded
