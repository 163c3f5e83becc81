"""LLaDA's own sampler: `generate` of ML-GSAI/LLaDA (`generate.py`), step for step.

Reference: github.com/ML-GSAI/LLaDA at b7e6c3565f194352da44b38dd12b6970597309f3 (`generate.py` as of 65cbed2);
Nie et al. 2025, "Large Language Diffusion Models". Per block of L positions, exactly s forwards (no early
stop); at step i (0-based) of a block whose n positions are open at its start:

1. k_i = n // s + (i < n % s) positions are transferred (`get_num_transfer_tokens`: the linear schedule of
   the paper's Eq. (8) discretised into s steps);
2. x0 = argmax of the logits (upstream keeps the MASK logit: `mask_logit=keep`), or with a temperature T > 0
   the argmax of exp(l) / (-log u)^T in float64, u uniform over the whole canvas (`add_gumbel_noise`:
   Gumbel-max sampling at temperature T);
3. confidence: `low_confidence` = softmax(logits)[x0] (the untempered probability of x0), `random` = a
   uniform draw per position;
4. the k_i most confident open positions take x0. A selected position whose x0 is MASK stays open (upstream
   "transfers" MASK there; the workbench never promotes the mask id, which is the same state).

Options (`--set`): `cfg_scale` w > 0 decodes with LLaDA's unsupervised classifier-free guidance (the prompt
replaced by MASK in the unconditional forward; the core runs it, see `guidance`); `logits_eos_inf` removes
EOS from the logits, `confidence_eos_eot_inf` gives EOS / EoT predictions confidence 0 (paper, Appendix
B.4; upstream's quirk kept: with a temperature only EoT's). `mask_logit=keep` is LLaDA's own softmax; the
default `remove` is the workbench's rule for every strategy (MASK is never predicted, so no block ends with
masks left), which on a trained LLaDA, whose MASK logit is never a target, should change little.

`--tau` sets `steps_per_token` in [0, 1]: s = max(1, round(tau * L)) forwards per block, so 1.0 is LLaDA's
published default (steps = gen_length, one token per step), 0.5 two tokens per step, 0 one forward per block.
`--set steps=N` is LLaDA's own argument (total steps over max_new_tokens, as upstream asserts: a multiple of
the number of blocks). Randomness follows the decode's streams (`state.rng`) in upstream's draw order, so a
batch-1 decode matches upstream seeded with `sample_seed(seed, sample_id)` and `--rng batch` its batched run.
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs
import torch

from plugins.gumbel import canvas_gumbel_argmax
from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from workbench import (BlockState, Guidance, Promotion, StashKey, UnsupportedSettings, hookimpl, non_negative,
                       positive_int, unit_interval)

REMASKING = ("low_confidence", "random")
_CALL_ROWS = StashKey[int]()  # rows of the generate call: on the batch stream upstream draws for all of them


def transfer_counts(open_at_start: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) long: tokens transferred at each step of a block (LLaDA's `get_num_transfer_tokens`): the
    n open positions of a row spread evenly, the first n % steps steps taking one more."""
    base, rem = open_at_start // steps, open_at_start % steps  # (B,)
    extra = torch.arange(steps, device=open_at_start.device)[None, :] < rem[:, None]
    return base[:, None] + extra.long()


def _optional_token_id(instance, attribute, value) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"{type(instance).__name__}: parameter {attribute.name!r} must be a token id >= 0 or "
                         f"null, got {value!r}")


@attrs.frozen(eq=False, kw_only=True)
class LLaDA:
    """LLaDA's `generate`: fixed steps per block, low-confidence or random remasking, CFG, Gumbel sampling."""

    name: ClassVar[str] = "llada"
    main_threshold: ClassVar[str] = "steps_per_token"
    # `workbench ablate`'s default sweep of the main knob (steps per token: one token per step, then two, then four).
    tau_grid: ClassVar[tuple[float, ...]] = (1.0, 0.5, 0.25)
    needs_logits: ClassVar[bool] = True  # x0 and its confidence come from the processed logits
    claims: ClassVar[tuple[str, ...]] = ("monotonicity",)  # a promoted token never changes

    steps_per_token: float = attrs.field(default=1.0, validator=unit_interval)
    steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(positive_int))
    remasking: str = attrs.field(default="low_confidence", validator=attrs.validators.in_(REMASKING))
    temperature: float = attrs.field(default=0.0, validator=non_negative)
    cfg_scale: float = attrs.field(default=0.0, validator=non_negative)
    logits_eos_inf: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    confidence_eos_eot_inf: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    eot_id: int | None = attrs.field(default=None, validator=_optional_token_id)
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))

    def __attrs_post_init__(self):
        if self.steps is not None and self.steps_per_token != 1.0:
            raise ValueError(f"LLaDA: give steps ({self.steps}, LLaDA's total) or steps_per_token "
                             f"({self.steps_per_token}, --tau), not both")

    def steps_per_block(self, state: BlockState) -> int:
        """s: forwards of this block. ValueError (a one-line usage error) for settings upstream refuses too."""
        config = state.config
        if config.temperature > 0:
            raise UnsupportedSettings("llada samples with its own Gumbel noise: leave --temperature at 0 and pass "
                             f"--set temperature={config.temperature:g}")
        if self.steps is None:
            s = max(1, math.floor(self.steps_per_token * state.length + 0.5))  # round half up
        else:
            blocks, left = divmod(config.max_new_tokens, config.block_size)
            if left or self.steps % blocks:
                raise UnsupportedSettings(f"llada: steps={self.steps} needs max_new_tokens ({config.max_new_tokens}) a "
                                 f"multiple of the block size ({config.block_size}) and steps a multiple of the "
                                 f"number of blocks ({max(blocks, 1)}), as LLaDA's generate asserts; or use --tau "
                                 f"(steps_per_token)")
            s = self.steps // blocks
        if s > state.cap:
            raise UnsupportedSettings(f"llada runs {s} forwards per block but the forward cap is {state.cap}: pass "
                             f"--max-forwards {s} (or fewer steps)")
        return s

    @hookimpl
    def guidance(self, state: BlockState) -> Guidance | None:
        """Called by the core once per block, before its first forward. Returns, when `cfg_scale` > 0, LLaDA's
        unconditional input: the prompt's columns (left padding included) replaced by MASK, committed blocks
        kept (upstream's `un_x[prompt_index] = mask_id`); None (no guidance) otherwise."""
        if self.cfg_scale == 0:
            return None
        if state.mask_id is None:
            raise ValueError("llada's classifier-free guidance replaces the prompt by MASK, and this model has no "
                             "mask token: leave cfg_scale at 0")
        context = state.context.clone()  # (B, C)
        context[:, :state.context.shape[1] - state.start] = state.mask_id
        return Guidance(context=context, scale=self.cfg_scale)

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core once per step, after the (guided) forward. Returns the logits x0 and its
        confidence are read from: MASK kept (LLaDA) or removed, EOS removed under `logits_eos_inf`."""
        self.steps_per_block(state)  # refuse bad settings before the first decision
        logits = mask_logit_rule(self.mask_logit, state, logits)  # keep: LLaDA's argmax may be MASK
        if self.logits_eos_inf:  # upstream: logits[:, :, 126081] = -inf (LLaDA-8B's EOS)
            logits[..., state.model.eos_id] = -torch.inf
        return logits

    def _rows(self, state: BlockState) -> tuple[list[int], list[int], list[int]]:
        """Per block row: the running rows, upstream's canvas width and the block's offset in it.

        Per-sample streams reproduce upstream's batch-1 run of the row (its own prompt length p_i); the batch
        stream its batched run (the padded prompt width). The layout decides the draws' shapes and also
        torch.topk's order among tied confidences, which depends on the vector's length and offset."""
        running = state.running.nonzero().flatten().tolist()
        gen, start = state.config.decoded_length, state.start  # the decoded canvas
        if state.rng.mode == "batch":
            prompts = [state.context.shape[1] - start] * state.batch_size
        else:
            prompts = (state.context_valid.sum(-1) - start).tolist()
        return running, [p + gen for p in prompts], [p + start for p in prompts]

    def _draws(self, state: BlockState, width: list[int], offset: list[int], vocab: int):
        """(Gumbel uniforms (B, L, V) float64 or None, random confidences (B, L) float32 or None) in upstream's
        order: per step the whole canvas's float64 noise, then its float32 remasking draw. On per-sample
        streams the noise is drawn by `canvas_gumbel_argmax` before this is called, so only the remasking
        draw is left here."""
        noisy, rand = self.temperature > 0, self.remasking == "random"
        b, length, device = state.batch_size, state.length, state.ids.device
        uniform = torch.zeros(b, length, device=device) if rand else None
        if state.rng.mode == "batch":  # one call for every row of the generate call, finished ones too
            noise = None
            rows = state.stash.setdefault(_CALL_ROWS, state.batch_size)  # block 1 holds every row
            gen, idx, lo = state.rng.generator(0), state.rows, offset[0]
            if noisy:
                noise = torch.rand((rows, width[0], vocab), dtype=torch.float64, generator=gen,
                                   device=device)[idx, lo:lo + length]
            if rand:
                uniform = torch.rand((rows, width[0]), generator=gen, device=device)[idx, lo:lo + length]
            return noise, uniform
        if rand:
            for i in state.running.nonzero().flatten().tolist():
                uniform[i] = torch.rand((1, width[i]), generator=state.rng.generator(i),
                                        device=device)[0, offset[i]:offset[i] + length]
        return None, uniform

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core once per step. Returns the k_i most confident open positions with their x0
        (MASK picks left open), and no progress fallback (upstream has none: k may be 0)."""
        logits, s = state.logits, self.steps_per_block(state)  # (B, L, V)
        running, width, offset = self._rows(state)
        x0 = logits.argmax(-1)  # (B, L)
        if self.temperature > 0 and state.rng.mode != "batch":  # each row's own stream, its own canvas
            x0 = canvas_gumbel_argmax(state, logits, self.temperature)
        noise, uniform = self._draws(state, width, offset, logits.shape[-1])
        if noise is not None:  # add_gumbel_noise on the batch stream: exp(l) / (-log u)^T in float64
            x0 = (logits.double().exp() / (-torch.log(noise)) ** self.temperature).argmax(-1)
        if self.remasking == "random":
            confidence = uniform
        else:
            scored = logits
            if self.confidence_eos_eot_inf:
                # Upstream: `logits_with_noise[..., EOS] = logits[..., EoT] = -inf` after x0 is taken. Without a
                # temperature both names are one tensor (EOS and EoT leave the softmax); with one, only EoT.
                scored = logits.clone()
                if self.eot_id is not None:
                    scored[..., self.eot_id] = -torch.inf
                if self.temperature == 0:
                    scored[..., state.model.eos_id] = -torch.inf
            confidence = scored.softmax(-1).gather(-1, x0[..., None]).squeeze(-1)  # (B, L)
        candidates = state.open_masks
        confidence = torch.where(candidates, confidence, -torch.inf)
        counts = transfer_counts(state.active.sum(-1), s)[:, min(state.step, s) - 1]  # (B,) this step's k
        chosen = torch.zeros_like(candidates)
        for i in running:
            # Upstream's top-k runs over the row's whole canvas (-inf off the block's open positions).
            row = torch.full((width[i],), -torch.inf, dtype=confidence.dtype, device=confidence.device)
            row[offset[i]:offset[i] + state.length] = confidence[i]
            k = min(int(counts[i]), int(candidates[i].sum()))
            chosen[i, torch.topk(row, k).indices - offset[i]] = True
        keep = chosen & candidates
        if state.mask_id is not None:
            keep = keep & (x0 != state.mask_id)  # a MASK pick stays open: upstream writes MASK there
        return Promotion(positions=keep, tokens=x0, fallback=False)

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        """Called by the core once per step. Returns True for every row after the block's s-th forward."""
        return torch.full_like(state.done, state.step >= self.steps_per_block(state))  # exactly s forwards

    @hookimpl
    def commit(self, state: BlockState) -> torch.Tensor:
        """Called by the core at the block's last step. Returns the promoted ids as they are."""
        # Positions left open by MASK picks stay masked, as upstream leaves them (the core reports `unfilled`).
        return state.ids


STRATEGY = LLaDA
