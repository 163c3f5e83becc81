"""Soft Parallel Decoding (DMax SPD).

Exactly the hard-token refinement loop of `strategies.hard` (contiguous promotion with tau_dec,
re-predicted token positions, stable-or-confident convergence with tau_acc, commit of current tops, the
reference switches `fill_at_cap` and `mask_logit`), except the input of a token position j: the
norm-preserving hybrid of DMax Eq. 9-10,
h~ = p_j E(top_j) + (1 - p_j) e_mask rescaled to norm p_j ||E(top_j)|| + (1 - p_j) ||e_mask||, p_j = conf_j
(`plugins.embedders.hybrid`). Mask positions get e_mask. Soft inputs exist only inside the current
block; committed blocks enter the context as hard ids.

Defaults: tau_dec = 0.5 (DMax math; 0.65 code, 0.0 quick start), tau_acc = 0.9, cap B forwards per block.
SPD expects an OPUT-trained model; on a plain MDLM it collapses (the paper's ablation).

Uniform-state canvases (DiffusionGemma, `--noise uniform`): open positions are fed random tokens, so DMax's
e_mask has no counterpart. `open_input` says what the hybrid mixes toward: `auto` (default) is e_mask on an
absorbing-state canvas and refuses on a uniform-state one with an error naming the choices; `mean` mixes
toward the mean embedding of the noise tokens (the expected input of an open position there); `mask` forces
e_mask (models that have one). Open positions keep their own input (e_mask, or their noise token).
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import torch

from plugins.embedders import OPEN_INPUTS, hybrid_embeddings
from strategies.hard import Hard
from workbench import BlockState, Denoiser, hookimpl


@attrs.frozen(eq=False, kw_only=True)
class Spd(Hard):
    """DMax SPD: `Hard` with hybrid soft inputs at token positions."""

    name: ClassVar[str] = "spd"

    open_input: str = attrs.field(default="auto", validator=attrs.validators.in_(OPEN_INPUTS))

    @hookimpl
    def embed_state(self, state: BlockState, model: Denoiser) -> torch.Tensor:
        return hybrid_embeddings(state, model, self.open_input)


STRATEGY = Spd
