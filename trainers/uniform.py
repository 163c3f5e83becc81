"""Uniform diffusion training: DMax's UDLM-style ablation baseline, and true uniform-state diffusion.

`mode="mixed"` (default, DMax's ablation): like OPUT, but the corrupted slots of the second copy hold
uniformly random vocabulary tokens (special tokens excluded) instead of the model's own predictions: the
model learns to repair random noise, not its own mistakes, which is the difference the ablation measures.
The first copy is the masked one, so the model still decodes from a mask canvas (and, having seen noise,
also from a random one: `--noise uniform`).

`mode="uniform-state"`: no mask at all, as uniform-state models (DiffusionGemma, UDLM) are trained: t ~ U(eps, 1)
per sequence, every response position (padding included) is replaced by a uniformly random token with
probability t, and the loss covers every answer position plus the first B trailing EOS positions. A model
trained this way is decoded from a random canvas (`noise = "uniform"` is recorded in its config, so `--noise
auto` picks it); it is the only mode for models without a mask token.

Random tokens come from the model's noise range (`noise_range()`: the ordinary tokens of the native
tokenizer, the whole vocabulary of DiffusionGemma), the same range decoding draws from.
"""

from __future__ import annotations

import attrs
import torch

from trainers.base import CorruptedCopy, TrainBatch, answer_plus_eos_block
from trainers.oput import full_response_copies, masked_copy, require_mask_token

MODES = ("mixed", "uniform-state")


def noise_tokens(model, shape, gen: torch.Generator, device) -> torch.Tensor:
    """Uniformly random tokens from the model's noise range (the range decoding draws from)."""
    from workbench.models.base import noise_range

    low, high = noise_range(getattr(model, "module", model))  # under DDP the wrapper hides the model
    return torch.randint(low, high, shape, generator=gen, device=device)


@attrs.frozen(eq=False, kw_only=True)
class Uniform:
    name = "uniform"
    mask_ratio: float = attrs.field(default=0.75, validator=[attrs.validators.gt(0), attrs.validators.le(1)])
    mode: str = attrs.field(default="mixed", validator=attrs.validators.in_(MODES))
    # Lower bound on t in uniform-state mode (as MDLM's: t never 0, so every example is corrupted a little).
    eps: float = attrs.field(default=1e-3, validator=[attrs.validators.gt(0), attrs.validators.lt(1)])

    # What a model trained with this objective is fed at open positions (`workbench.training.train` records it).
    def decode_noise(self) -> str:
        return "uniform" if self.mode == "uniform-state" else "mask"

    def corrupt(self, model, batch: TrainBatch, block_size: int, gen: torch.Generator) -> list[CorruptedCopy]:
        response = batch.response
        if self.mode == "uniform-state":
            t = self.eps + (1 - self.eps) * torch.rand(response.shape[0], generator=gen, device=response.device)
            corrupted = torch.rand(response.shape, generator=gen, device=response.device) < t[:, None]
            noisy = torch.where(corrupted, noise_tokens(model, response.shape, gen, response.device), response)
            weights = answer_plus_eos_block(batch, block_size)
            return [CorruptedCopy(noisy, weights, float(weights.sum()))]
        require_mask_token(model, "uniform (mode=mixed)", "--set mode=uniform-state")
        x_m = masked_copy(model, batch, self.mask_ratio, gen)
        x_u = torch.where(x_m == model.mask_id, noise_tokens(model, x_m.shape, gen, x_m.device), x_m)
        return full_response_copies(batch, block_size, x_m, x_u)
