"""MDLM: masked diffusion training (LLaDA / MDLM objective), the base model's pretraining and the
continued-training control of the ablation.

t ~ U(eps, 1) per sequence, each response token (EOS padding included, as LLaDA pads SFT answers)
masked with probability t, cross-entropy on masked positions weighted 1/t, averaged over all response
positions (the MDLM ELBO estimate).
"""

from __future__ import annotations

import attrs
import torch

from trainers.base import CorruptedCopy, TrainBatch, bernoulli_mask
from trainers.oput import require_mask_token


@attrs.frozen(eq=False, kw_only=True)
class MDLM:
    name = "mdlm"
    # Lower bound on t: 1/t weights explode for t -> 0 (MDLM uses 1e-3).
    eps: float = attrs.field(default=1e-3, validator=[attrs.validators.gt(0), attrs.validators.lt(1)])

    def corrupt(self, model, batch: TrainBatch, block_size: int, gen: torch.Generator) -> list[CorruptedCopy]:
        require_mask_token(model, "mdlm")
        response = batch.response
        n = response.shape[0]
        t = self.eps + (1 - self.eps) * torch.rand(n, generator=gen, device=response.device)
        masked = bernoulli_mask(response.shape, t, gen, response.device)
        noisy = torch.where(masked, torch.full_like(response, model.mask_id), response)
        weights = masked.float() / t[:, None]
        return [CorruptedCopy(noisy, weights, float(response.numel()))]
