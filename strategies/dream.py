"""Dream's sampler: `DreamGenerationMixin.diffusion_generate` with its four algorithms (Dream 7B, HKU / Huawei).

Dream decodes one canvas in `steps` forwards. At step i of S, with t = timesteps[i], s = timesteps[i + 1] and
`timesteps = linspace(1, eps, S + 1)` (float32), over the open (masked) positions of a row:

- `origin` (the default; Austin et al. 2021, arXiv 2107.03006): each open position is decoded with
  probability 1 - s/t (1 at the last step), the absorbing-state reverse step of the linear schedule
  alpha_t = 1 - t; so the number decoded per step and their order are random;
- `maskgit_plus` (MaskGIT, arXiv 2202.04200), `topk_margin` (arXiv 2502.06768), `entropy`: the k most
  confident open positions are decoded, k = int(n * (1 - s/t)) (all n at the last step), confidence = the
  token's probability, top1 - top2, or the negative entropy; with `alg_temp` > 0 the k positions are drawn
  from softmax(confidence / alg_temp) instead.

Tokens come from the logits divided by `temperature` (when > 0), then `top_p`, then `top_k` filtering, then
the softmax: the argmax, or a draw when temperature > 0; every confidence is read from those filtered,
tempered probabilities. Dream's logits are shifted (logits at i predict i + 1, AR initialisation); the
model adapter realigns them (`ModelProfile.logits_shift`), so this strategy reads ordinary logits.

The workbench runs Dream's schedule per block: S = `steps // n_blocks` when `steps` is set (Dream's total, as
Fast-dLLM's block variant splits it), else round(`steps_per_token` * block length) (at least 1). With one
block of max_new_tokens (`--block-size` = `--gen-length`) and `steps` it is Dream's `diffusion_generate`;
`tests/reference/dream/` holds the golden transcripts. Reference switches: `mask_logit=keep` (Dream keeps the
MASK logit: a MASK argmax is "decoded" and stays masked) and `precision=model` (Dream samples in the logits'
own dtype, bfloat16 for its checkpoints). Draws come from the per-sample generators (`state.rng`) in Dream's
order, so a batch-1 decode equals Dream under `torch.manual_seed(sample_seed(seed, sample_id))`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from workbench import (BlockState, Promotion, StashKey, UnsupportedSettings, hookimpl, non_negative, positive_int,
                       unit_interval)

ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")
PRECISIONS = ("float32", "model")
ENTROPY_EPS = 1e-10  # sample_tokens(neg_entropy=True): sum p * log(p + 1e-10)
_STEPS = StashKey[tuple[int, int]]()  # (block index, steps of that block), checked once per block


_optional = attrs.validators.optional


def _below_one(instance, attribute, value) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"Dream: parameter {attribute.name!r} must be in [0, 1), got {value!r}")


def _probability_mass(instance, attribute, value) -> None:
    if value is not None and not 0.0 < value <= 1.0:
        raise ValueError(f"Dream: parameter {attribute.name!r} must be in (0, 1] or None, got {value!r}")


def dream_probs(logits: torch.Tensor, temperature: float, top_p: float | None, top_k: int | None) -> torch.Tensor:
    """(n, V) probabilities as Dream's `sample_tokens` builds them from (n, V) logits, in their dtype:
    temperature, then nucleus (top_p) and top-k filtering (dropped logits set to the dtype's minimum)."""
    if temperature > 0:
        logits = logits / temperature
    floor = torch.finfo(logits.dtype).min
    if top_p is not None and top_p < 1:
        ordered, order = logits.sort(-1, descending=True)
        over = ordered.softmax(-1).cumsum(-1) > top_p  # (n, V) in sorted order
        over = torch.cat([torch.zeros_like(over[:, :1]), over[:, :-1]], -1)  # keep the token that crosses top_p
        logits = logits.masked_fill(torch.zeros_like(over).scatter(-1, order, over), floor)
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[:, -1:]  # (n, 1)
        logits = logits.masked_fill(logits < kth, floor)
    return logits.softmax(-1)


@attrs.frozen(eq=False, kw_only=True)
class Dream:
    """Dream's `diffusion_generate`: origin, maskgit_plus, topk_margin and entropy, on Dream's time schedule."""

    name: ClassVar[str] = "dream"
    main_threshold: ClassVar[str] = "steps_per_token"
    # `workbench ablate`'s default sweep of the main knob (steps per generated position: one token per step, then two, then four).
    tau_grid: ClassVar[tuple[float, ...]] = (1.0, 0.5, 0.25)
    needs_logits: ClassVar[bool] = True  # Dream's own filters and softmax run on the processed logits

    alg: str = attrs.field(default="origin", validator=attrs.validators.in_(ALGS))
    steps: int | None = attrs.field(default=None, validator=_optional(positive_int))  # overrides steps_per_token
    steps_per_token: float = attrs.field(default=1.0, validator=unit_interval)
    eps: float = attrs.field(default=1e-3, converter=float, validator=_below_one)
    temperature: float = attrs.field(default=0.0, converter=float, validator=non_negative)
    top_p: float | None = attrs.field(default=None, validator=_probability_mass)
    top_k: int | None = attrs.field(default=None, validator=_optional(positive_int))
    alg_temp: float | None = attrs.field(default=None, validator=_optional(non_negative))
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))
    precision: str = attrs.field(default="float32", validator=attrs.validators.in_(PRECISIONS))

    def block_steps(self, state: BlockState) -> int:
        """S, the forwards of the current block (checked against the decode once per block)."""
        found = state.stash.get(_STEPS)
        if found is not None and found[0] == state.block_index:
            return found[1]
        config = state.config
        if self.steps is not None:
            blocks = len(config.block_spans())
            if self.steps % blocks:
                raise UnsupportedSettings(f"dream: steps={self.steps} must split evenly over the {blocks} blocks of "
                                 f"{config.max_new_tokens} positions in blocks of {config.block_size}")
            n_steps = self.steps // blocks
        else:
            n_steps = max(1, round(self.steps_per_token * state.length))
        if n_steps > config.cap:
            raise UnsupportedSettings(f"dream runs {n_steps} steps per block but the forward cap is {config.cap}: pass "
                             f"--max-forwards {n_steps}, or fewer steps")
        if config.temperature > 0:
            raise UnsupportedSettings(
                "dream samples with its own temperature (--set temperature=T); leave --temperature at 0")
        state.stash[_STEPS] = (state.block_index, n_steps)
        return n_steps

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """The MASK logit rule (core, once per step): removed by default, kept for Dream's own behaviour."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Dream's step for every running row (core, once per step, after the forward): the positions decoded
        this step with their tokens; a decoded MASK (mask_logit=keep) stays open; no progress fallback
        (Dream's first step often decodes nothing)."""
        n_steps = self.block_steps(state)
        logits = state.logits  # (B, L, V)
        if self.precision == "model":  # exact: the loop widened the model's logits to float32 losslessly
            logits = logits.to(state.model.embedding_table().dtype)
        step = state.step - 1
        timesteps = torch.linspace(1, self.eps, n_steps + 1, device=logits.device)  # float32, as Dream's
        t, s = timesteps[step], timesteps[step + 1]
        last = step >= n_steps - 1
        open_ = state.open_masks  # (B, L)
        positions, tokens = torch.zeros_like(open_), torch.zeros_like(state.ids)
        for row in open_.any(-1).nonzero().flatten().tolist():
            where = open_[row].nonzero().flatten()  # (n,) ascending, as Dream's x[mask_index]
            chosen, picked = self._row(state, row, logits[row, where], where, t, s, last)
            tokens[row, chosen] = picked
            positions[row, chosen] = picked != state.mask_id if state.mask_id is not None else True
        return Promotion(positions=positions, tokens=tokens, fallback=False)

    def _row(self, state, row, logits, where, t, s, last) -> tuple[torch.Tensor, torch.Tensor]:
        """(block positions, tokens) Dream decodes in one row this step; `logits` (n, V) at its open `where`."""
        gen = state.rng.generator(row)
        if self.alg == "origin":
            p_decode = 1 if last else 1 - s / t  # Dream: the int 1 at the last step
            pick = torch.rand(where.shape[0], device=logits.device, generator=gen) < p_decode
            _, x0 = self._tokens(dream_probs(logits[pick], self.temperature, self.top_p, self.top_k), gen)
            return where[pick], x0
        probs = dream_probs(logits, self.temperature, self.top_p, self.top_k)  # (n, V)
        conf, x0 = self._tokens(probs, gen)
        if self.alg == "topk_margin":
            top2 = probs.topk(2, -1).values
            conf = top2[:, 0] - top2[:, 1]
        elif self.alg == "entropy":
            conf = (probs * torch.log(probs + ENTROPY_EPS)).sum(-1)
        count = torch.tensor(where.shape[0], device=logits.device) / 1  # float32, as Dream's masks.sum() / N
        k = int(count) if last else int(count * (1 - s / t))
        if k == 0:
            return where[:0], x0[:0]
        # Dream ranks a row of its whole canvas: [context ; generated], -inf except at masks. Rebuilt as this
        # row's would be alone, so topk orders ties alike and alg_temp's draw consumes the same stream.
        valid = state.context_valid
        offset = int(valid[row].sum()) if valid is not None else 0  # the row's prompt and committed blocks
        ranked = torch.full((offset + state.config.decoded_length - state.start,), -math.inf, dtype=conf.dtype,
                            device=conf.device)
        ranked[offset + where] = conf
        if self.alg_temp:
            index = torch.multinomial((ranked / self.alg_temp).softmax(-1), k, generator=gen)
        else:
            index = ranked.topk(k).indices
        index = index - offset  # block positions
        # A draw can land on a zero-probability position when fewer than k confidences survive the softmax
        # (Dream then writes MASK over that position): only open positions are decoded here.
        index = index[(index >= 0) & (index < state.length)]
        index = index[state.open_masks[row, index]]
        slot = torch.searchsorted(where, index)  # each picked position's rank among the open ones
        return index, x0[slot]

    def _tokens(self, probs: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(confidence, token) per row of probs (n, V): argmax, or one categorical draw per row with a
        temperature (torch.distributions.Categorical's normalisation and multinomial call)."""
        if self.temperature > 0 and probs.shape[0]:
            x0 = torch.multinomial(probs / probs.sum(-1, keepdim=True), 1, True, generator=gen).squeeze(-1)
            return probs.gather(-1, x0[:, None]).squeeze(-1), x0
        return probs.max(-1)

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        """Final after S steps (Dream's loop), or earlier when no position is open (Dream would forward on)."""
        return ~state.open_masks.any(-1) | (state.step >= self.block_steps(state))

    @hookimpl
    def commit(self, state: BlockState) -> torch.Tensor:
        """The ids as decoded: a position still open after the last step keeps the mask id, as in Dream's
        output (the core counts it as `unfilled`)."""
        return state.ids


STRATEGY = Dream
