"""PC-Sampler: position-aware calibration of decoding bias ("PC-Sampler: Position-Aware Calibration of
Decoding Bias in Masked Diffusion Models", arXiv:2508.13021; github.com/NEUIR/PC-Sampler).

LLaDA's fixed-step loop with a new ranking. Each block takes `steps` forwards; at step i it promotes the k_i
best open positions, k_i from LLaDA's `get_num_transfer_tokens` schedule (n // steps per step, one more on
the first n % steps steps, n = the block's open positions at its start). A position j of the block (0 =
its first) with predicted token x0 of probability p scores

    score_j = exp(-lambd * j) * min(-p * log(f(x0) + 1e-9), alpha)

f the token's frequency in a reference corpus: the position weight pulls decoding left to right, the
calibration (p times the token's surprisal) stops frequent, trivial tokens (EOS padding, punctuation) from
being decoded early just because the model is sure of them; `alpha` clips it. Promoted tokens are final.

Defaults (the authors' scripts): lambd = 0.25, alpha = 10, one token per step (`steps` = the block length;
they decode one block of the whole generation length), greedy. `baseline`: the corpus, a JSON file in
PC-Sampler's format (`{"num_token": N, "p_baseline_dict": {id: count}}`; their counting script's
`token_frequency_dict` is read too), ids absent from it get 1 / N. Their corpora are tokenizer specific
(`data/baseline/reference_corpus_llada.json` for LLaDA); without one (the default, and the shipped
character-level models) every token gets 1 / V, so the score is the position-weighted confidence.

Reference switches (`--set name=value`): `mask_logit=keep` (MASK stays in the softmax; a selected position
whose x0 is MASK is not promoted and counts in k, and positions still open after the block's steps are
committed as MASK, as the reference leaves them); `temperature=T` (LLaDA's Gumbel draw with the reference's
random stream, `plugins.gumbel`; the score then uses p of the sampled token).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import attrs
import torch

from plugins.gumbel import canvas_gumbel_argmax
from plugins.logits import MASK_LOGIT_RULES, mask_logit_rule
from workbench import BlockState, Promotion, StashKey, UnsupportedSettings, hookimpl, non_negative, positive_int

LOG_EPS = 1e-9  # the reference's log(f + 1e-9)
COUNT_KEYS = ("p_baseline_dict", "token_frequency_dict")  # the loader's key, and the counting script's

_TABLE = StashKey[torch.Tensor]()  # (V,) float32 token frequencies on the model's device


def _corpus_file(instance, attribute, value) -> None:
    if value is not None and not (isinstance(value, str) and Path(value).is_file()):
        raise ValueError(f"PCSampler: parameter 'baseline' must be a corpus JSON file, got {value!r} (not a file)")


def frequency_table(path: str | None, vocab: int) -> torch.Tensor:
    """(V,) float32: each id's frequency in the corpus file (count / num_token, 1 / num_token for ids it lacks),
    built as the reference's `load_baseline` builds it; None = 1 / V for every id."""
    if path is None:
        return torch.full((vocab,), 1 / vocab, dtype=torch.float32)
    data = json.loads(Path(path).read_text())
    counts = next((data[k] for k in COUNT_KEYS if k in data), None)
    if not isinstance(data.get("num_token"), (int, float)) or not isinstance(counts, dict):
        raise ValueError(f"pc-sampler: {path} is not a PC-Sampler corpus (needs 'num_token' and "
                         f"'p_baseline_dict' {{id: count}})")
    total = data["num_token"]
    table = torch.full((vocab,), 1 / total, dtype=torch.float32)
    freq = {int(k): v / total for k, v in counts.items()}  # Python division, then float32, as the reference
    if freq and max(freq) >= vocab:
        raise ValueError(f"pc-sampler: {path} counts id {max(freq)}, beyond the model's vocabulary ({vocab}): "
                         f"a corpus of another tokenizer")
    if freq:
        table[torch.tensor(list(freq))] = torch.tensor(list(freq.values()), dtype=torch.float32)
    return table


def calibrated_scores(p: torch.Tensor, freq: torch.Tensor, lambd: float, alpha: float) -> torch.Tensor:
    """(B, L) float32 scores from p (B, L) float32 (the probability of each position's token) and freq (B, L)
    (its corpus frequency), in the reference's order of operations."""
    salience = (-p * torch.log(freq + LOG_EPS)).clamp(max=alpha)  # calibration: p times the token's surprisal
    position = torch.arange(p.shape[1], device=p.device, dtype=torch.float32)
    return torch.exp(-lambd * position) * salience  # position-aware weight, j from the block's start


def transfer_counts(n: torch.Tensor, steps: int, step: int) -> torch.Tensor:
    """(B,) long, positions to promote at 0-based `step` of `steps` for rows with n (B,) open positions at
    block start: LLaDA's `get_num_transfer_tokens` (n // steps, one more on the first n % steps steps)."""
    return n // steps + (step < n % steps).long()


@attrs.frozen(eq=False, kw_only=True)
class PCSampler:
    """PC-Sampler: LLaDA's fixed-step top-k on position-weighted, frequency-calibrated confidence."""

    name: ClassVar[str] = "pc-sampler"
    main_threshold: ClassVar[str] = "lambd"  # no threshold: --tau sets the position decay (see docs)
    # `workbench ablate`'s default sweep of the main knob (the position decay; it does not change TPF (its fixed steps do), so one TPF).
    tau_grid: ClassVar[tuple[float, ...]] = (0.0, 0.25, 1.0)
    claims: ClassVar[tuple[str, ...]] = ("monotonicity",)  # promoted tokens are never revised

    lambd: float = attrs.field(default=0.25, validator=non_negative)
    alpha: float = attrs.field(default=10.0, validator=[non_negative, attrs.validators.gt(0.0)])  # > 0
    steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(positive_int))
    baseline: str | None = attrs.field(default=None, validator=_corpus_file)
    mask_logit: str = attrs.field(default="remove", validator=attrs.validators.in_(MASK_LOGIT_RULES))
    temperature: float = attrs.field(default=0.0, validator=non_negative)

    @property
    def needs_logits(self) -> bool:
        """The Gumbel draw reads the processed logits; greedy decoding needs only `top` and `conf`."""
        return self.temperature > 0

    def block_steps(self, state: BlockState) -> int:
        return self.steps if self.steps is not None else state.length

    @hookimpl
    def process_logits(self, state: BlockState, logits: torch.Tensor) -> torch.Tensor:
        """Called by the core after each forward; returns the logits with the `mask_logit` rule applied."""
        return mask_logit_rule(self.mask_logit, state, logits)

    @hookimpl
    def promote(self, state: BlockState) -> Promotion:
        """Called by the core once per step; returns the k_i best-scoring open positions of every running row
        with their tokens, and no progress fallback (a step of the schedule may promote none)."""
        if self.temperature > 0 and state.config.temperature > 0:
            raise UnsupportedSettings("pc-sampler: --temperature and --set temperature both sample; give one (the "
                             "strategy's is LLaDA's Gumbel draw, the reference's stream)")
        table = state.stash.get(_TABLE)
        if table is None:
            table = frequency_table(self.baseline, state.vocab_size).to(state.conf.device)
            state.stash[_TABLE] = table
        if self.temperature > 0:
            tokens = canvas_gumbel_argmax(state, state.logits, self.temperature)
            p = state.logits.softmax(-1).gather(-1, tokens[..., None]).squeeze(-1).float()  # p of the sample
        else:
            tokens, p = state.top, state.conf  # argmax and its probability, float32
        open_ = state.open_masks
        scores = calibrated_scores(p, table[tokens], self.lambd, self.alpha).masked_fill(~open_, float("-inf"))
        k = transfer_counts(state.active.sum(-1), self.block_steps(state), state.step - 1)
        k = torch.minimum(k, open_.sum(-1))  # (B,) never more than is open
        chosen = torch.zeros_like(open_)
        # One torch.topk per row, as the reference ranks: its tie order is topk's own (k differs per row).
        for i in state.running.nonzero().flatten().tolist():
            chosen[i, scores[i].topk(int(k[i])).indices] = True
        if self.mask_logit == "keep" and state.mask_id is not None:
            chosen = chosen & (tokens != state.mask_id)  # the reference writes MASK back: it stays open
        return Promotion(positions=chosen, tokens=tokens, fallback=False)

    @hookimpl
    def converge(self, state: BlockState) -> torch.Tensor:
        """Called by the core after each promotion; a row's block is final after its `steps` forwards (the
        fixed schedule: a step with nothing left to promote still spends its forward, as in the reference)."""
        return torch.full_like(state.done, state.step >= self.block_steps(state))

    @hookimpl
    def commit(self, state: BlockState) -> torch.Tensor:
        """Called by the core for rows finishing this step; returns the promoted tokens unchanged (never
        revised). Positions still open (a cap below `steps`, or a MASK prediction under `mask_logit=keep`)
        take their current top, except under `keep` on a mask canvas: there they stay MASK, as the reference
        never revisits them (the core counts them as unfilled)."""
        fill = state.ids if self.mask_logit == "keep" and not state.uniform else state.top
        return torch.where(state.is_mask, fill, state.ids)


STRATEGY = PCSampler
