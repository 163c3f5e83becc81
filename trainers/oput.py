"""OPUT: DMax's On-Policy Uniform Training.

Fixed mask ratio t = 0.75 (the paper's [t_l, t_h] = [0.75, 0.75]); every response position, padding
included, is masked by a Bernoulli(t) draw. Two copies per example, mixed 50/50: the masked input x_m,
and x_p = x_m with every mask replaced by the model's own greedy prediction from one no-grad forward
on x_m with the current weights (on-policy). Cross-entropy against the clean sequence on ALL answer
positions plus the first B trailing EOS positions, no 1/t weight: L = L_mask + L_pred.

`copy_inputs="soft"` (a lab variant, not DMax's): x_p's predicted positions are fed SPD's hybrid
p E(top) + (1 - p) e_mask with p the prediction's confidence (MASK logit removed, as SPD decodes by default)
instead of E(top), so the model is trained on the inputs SPD decodes with. The default `hard` is DMax's.
"""

from __future__ import annotations

import attrs
import torch

from trainers.base import CorruptedCopy, TrainBatch, answer_plus_eos_block, bernoulli_mask, response_logits

COPY_INPUTS = ("hard", "soft")


def require_mask_token(model, trainer: str, alternative: str = "--trainer uniform --set mode=uniform-state") -> None:
    """A clear refusal for an absorbing-state objective on a model without a mask token (DiffusionGemma)."""
    if getattr(getattr(model, "module", model), "mask_id", None) is None:
        raise ValueError(f"trainer {trainer} corrupts answers with the mask token, and this model has none (a "
                         f"uniform-state model such as DiffusionGemma); train it with {alternative}")


def masked_copy(model, batch: TrainBatch, t: float, gen: torch.Generator) -> torch.Tensor:
    response = batch.response
    rate = torch.full((response.shape[0],), t, device=response.device)
    masked = bernoulli_mask(response.shape, rate, gen, response.device)
    return torch.where(masked, torch.full_like(response, model.mask_id), response)


def full_response_copies(batch: TrainBatch, block_size: int, x_m: torch.Tensor, x_other: torch.Tensor):
    """The two copies OPUT and uniform training share: loss on every answer position + the EOS block."""
    weights = answer_plus_eos_block(batch, block_size)
    norm = float(weights.sum())
    return [CorruptedCopy(x_m, weights, norm), CorruptedCopy(x_other, weights, norm)]


@attrs.frozen(eq=False, kw_only=True)
class OPUT:
    name = "oput"
    mask_ratio: float = attrs.field(default=0.75, validator=[attrs.validators.gt(0), attrs.validators.le(1)])
    copy_inputs: str = attrs.field(default="hard", validator=attrs.validators.in_(COPY_INPUTS))

    def fsdp_refusal(self) -> str | None:
        """Called by `workbench.training.train` under --fsdp: the soft copy builds its hybrid inputs from the embedding
        table outside the model's forward, where FSDP does not keep the gathered table alive for the backward
        (measured: a segfault in the backward on 2 gloo ranks). None for DMax's hard copy."""
        if self.copy_inputs == "soft":
            return ("trainer oput with copy_inputs=soft builds SPD's hybrid inputs from the embedding table "
                    "outside the model's forward, which --fsdp does not support; train it without --fsdp (DDP "
                    "shares the work the same way) or with copy_inputs=hard")
        return None

    def corrupt(self, model, batch: TrainBatch, block_size: int, gen: torch.Generator) -> list[CorruptedCopy]:
        require_mask_token(model, "oput")
        x_m = masked_copy(model, batch, self.mask_ratio, gen)
        was_training = model.training
        model.eval()  # greedy prediction of the current policy: no dropout noise, no gradient
        with torch.no_grad():
            logits = response_logits(model, batch, x_m, block_size)
            if self.copy_inputs == "soft":
                logits = logits.float()
                logits[..., model.mask_id] = float("-inf")  # SPD's default: MASK is never a prediction
        model.train(was_training)
        masked = x_m == model.mask_id
        x_p = torch.where(masked, logits.argmax(-1), x_m)
        copies = full_response_copies(batch, block_size, x_m, x_p)
        if self.copy_inputs == "soft":
            conf = torch.where(masked, logits.softmax(-1).amax(-1), torch.ones_like(logits[..., 0]))
            copies[1] = attrs.evolve(copies[1], soft=conf)
        return copies
