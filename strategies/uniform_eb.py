"""Entropy-bounded uniform-state decoding: transformers' `DiffusionGemmaForBlockDiffusion.generate`.

Per block (canvas), starting from uniformly random tokens, at every step (cur_step counts down N..1):
1. `process_logits`: logits / T, T = t_min + (t_max - t_min) * cur_step / N (linear temperature schedule);
   the processed logits are fed back to the model as self-conditioning at the next step (the core does
   that for self-conditioning models);
2. `revoke`: every token position goes back to open (a token accepted earlier is renoised unless
   accepted again);
3. `promote`: a denoiser canvas is sampled from softmax(processed logits); positions are sorted by entropy
   (ascending) and the longest prefix with cumsum(entropy) - entropy_k <= entropy_bound is accepted with its
   sampled token (EB-sampler, Ben-Hamu et al. 2025); no progress fallback. The core then renoises every open
   position with fresh uniform tokens;
4. `converge`: the argmax canvas equals the last `stability_threshold` argmax canvases and the mean entropy of
   the processed logits is below `confidence_threshold` (or the step is the N-th);
5. `commit`: the argmax canvas of the processed logits.
Every parameter left None takes the model's generation config (DiffusionGemma's `generation_config.json`,
else `generate`'s defaults: N 48, entropy_bound 0.1, t 0.4..0.8, stability 1, confidence 0.005).

Exact parity with `generate` (same token ids, same decoder-forward counts) needs the same random stream:
`DecodeConfig(rng="batch", seed=s)` after `generate` ran under `torch.manual_seed(s)`; with per-sample streams
(the default) a batch-1 decode equals `generate` seeded with `workbench.decoding.rng.sample_seed(s, sample_id)`.
A `max_new_tokens` that is not a multiple of the canvas needs `DecodeConfig.last_block="full"` (a DiffusionGemma
model's default): `generate` denoises a whole last canvas, and so does the core, cutting the output afterwards.
Counting: `nfe` is decoder forwards, as `generate`'s tokens-per-forward divides by; its token count keeps the
EOS, the workbench's excludes it. `--temperature` must stay 0 (the schedule is the temperature).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.logits import mask_logit_rule
from workbench import BlockState, Promotion, StashKey, UnsupportedSettings, hookimpl

# `generate`'s defaults (DiffusionGemmaGenerationConfig._get_default_generation_params), for models that
# carry no generation config of their own.
GENERATE_DEFAULTS = {"max_denoising_steps": 48, "entropy_bound": 0.1, "t_min": 0.4, "t_max": 0.8,
                     "stability_threshold": 1, "confidence_threshold": 0.005}

_SETTINGS = StashKey[dict]()
_HISTORY = StashKey[tuple[int, torch.Tensor]]()  # (block, (S, B, L) last argmax canvases, -1 = none yet)

_optional_positive = attrs.validators.optional(attrs.validators.gt(0))


def _nonnegative_int(instance, attribute, value):
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise ValueError(f"UniformEB: parameter {attribute.name!r} must be an integer >= 0, got {value!r}")


def _steps(instance, attribute, value):
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"UniformEB: parameter {attribute.name!r} must be a positive integer, got {value!r}")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy of softmax(logits) (B, L), computed as `generate` computes it."""
    return torch.distributions.Categorical(logits=logits).entropy()


def eb_accept(ent: torch.Tensor, bound: float) -> torch.Tensor:
    """EB-sampler acceptance: sort by entropy, accept the longest prefix with cumsum - current <= bound. (B, L)"""
    ordered, order = torch.sort(ent, dim=-1, descending=False)
    keep = ordered.cumsum(-1) - ordered <= bound
    return torch.scatter(torch.zeros_like(keep), -1, order, keep)


@attrs.frozen(eq=False, kw_only=True)
class UniformEB:
    """DiffusionGemma's sampler: EB acceptance, renoising, a temperature schedule, a stable-and-confident stop."""

    name: ClassVar[str] = "uniform-eb"
    main_threshold: ClassVar[str] = "entropy_bound"
    # `workbench ablate`'s default sweep of the main knob (entropy bounds (nats), careful to parallel).
    tau_grid: ClassVar[tuple[float, ...]] = (0.01, 0.1, 1.0)
    needs_probs: ClassVar[bool] = True  # the denoiser canvas is sampled from the full distribution
    needs_logits: ClassVar[bool] = True  # entropies and the argmax canvas come from the processed logits
    claims: ClassVar[tuple[str, ...]] = ()

    max_denoising_steps: int | None = attrs.field(default=None, validator=_steps)
    entropy_bound: float | None = attrs.field(default=None, validator=_optional_positive)
    t_min: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    t_max: float | None = attrs.field(default=None, validator=_optional_positive)
    stability_threshold: int | None = attrs.field(default=None, validator=_nonnegative_int)
    confidence_threshold: float | None = attrs.field(default=None, validator=_optional_positive)

    def forwards_per_block(self, length: int) -> int:
        """Called by the core at each block start when neither --max-forwards nor the model (a DiffusionGemma
        folder's generation config) sets the cap: `max_denoising_steps`, else `generate`'s default, so that the
        schedule runs on any model without a --max-forwards of its own."""
        return self.max_denoising_steps or GENERATE_DEFAULTS["max_denoising_steps"]

    def settings(self, state: BlockState) -> dict:
        """The parameters in force: this strategy's, else the model's generation config, else `generate`'s."""
        found = state.stash.get(_SETTINGS)
        if found is None:
            model_defaults = getattr(state.model, "generation_defaults", None)
            base = {**GENERATE_DEFAULTS, **(model_defaults() if callable(model_defaults) else {})}
            found = {k: (v if (v := getattr(self, k)) is not None else base[k]) for k in GENERATE_DEFAULTS}
            if found["t_max"] <= found["t_min"]:
                raise ValueError(f"uniform-eb: t_max {found['t_max']} must exceed t_min {found['t_min']}")
            if state.cap < found["max_denoising_steps"]:
                raise UnsupportedSettings(
                    f"uniform-eb runs max_denoising_steps={found['max_denoising_steps']} steps per "
                                 f"block, but the forward cap is {state.cap}: pass --max-forwards "
                                 f"{found['max_denoising_steps']} or --set max_denoising_steps={state.cap}")
            if state.config.temperature > 0:
                raise UnsupportedSettings("uniform-eb samples with its own temperature schedule (t_min..t_max); "
                                 "leave --temperature at 0")
            state.stash[_SETTINGS] = found
        return found

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        s = self.settings(state)
        n = s["max_denoising_steps"]
        # The same float32 arithmetic as generate's LinearTemperatureScheduleLogitsProcessor: cur_step is an
        # int32 tensor counting down N..1, so T is a float32 scalar tensor.
        cur_step = torch.tensor(n - state.step + 1, dtype=torch.int32, device=logits.device)
        temperature = s["t_min"] + (s["t_max"] - s["t_min"]) * (cur_step / n)
        # On an absorbing-state canvas (a model with a mask token, decoded from masks) MASK is not a token to
        # sample or commit; DiffusionGemma's uniform canvas has none, so generate's arithmetic is unchanged.
        return logits / temperature if state.uniform else mask_logit_rule("remove", state, logits / temperature)

    @hookimpl
    def revoke(self, state: BlockState) -> torch.Tensor:
        return state.token_positions  # everything accepted before is renoised unless accepted again

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        accept = eb_accept(entropy(state.logits), self.settings(state)["entropy_bound"])  # (B, L)
        sampled = state.rng.multinomial(state.probs)  # (B, L) the denoiser canvas
        return Promotion(positions=accept & state.open_masks, tokens=sampled, fallback=False)

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        s = self.settings(state)
        argmax = state.logits.argmax(-1)  # (B, L)
        depth = s["stability_threshold"]
        block, history = state.stash.get(_HISTORY) or (None, None)
        if block != state.block_index or history is None or history.shape[1:] != argmax.shape:
            history = torch.full((depth, *argmax.shape), -1, dtype=argmax.dtype, device=argmax.device)
        stable = (history == argmax[None]).all(-1).all(0) if depth else torch.ones_like(state.done)
        state.stash[_HISTORY] = (state.block_index, torch.cat([history[1:], argmax[None]]) if depth else history)
        confident = entropy(state.logits).mean(-1) < s["confidence_threshold"]
        return (stable & confident) | (state.step >= s["max_denoising_steps"])

    @hookimpl
    def commit(self, state: BlockState) -> torch.Tensor:
        return torch.where(state.active, state.logits.argmax(-1), state.ids)  # the argmax canvas


STRATEGY = UniformEB
