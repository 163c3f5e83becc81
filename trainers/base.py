"""What every trainer shares: batches of tokenised examples and the model's response logits.

A trainer (objective) only decides how a clean response is corrupted and which positions the loss
covers; the layout the model sees (block diffusion [noisy ; clean] for block-causal models, plain
[prompt ; noisy] for bidirectional ones) is decided here, from the model, for every objective alike.
"""

from __future__ import annotations

from typing import Protocol

import attrs
import torch
import torch.nn.functional as F

from workbench.models.masks import block_diffusion_training_mask, decode_attention_mask, position_ids_from_valid


@attrs.frozen
class TrainBatch:
    """prompt: (N, P) long, left-padded; prompt_valid: (N, P) bool; response: (N, R) long, clean answer
    followed by EOS padding; answer_len: (N,) long, answer tokens before the first EOS."""

    prompt: torch.Tensor
    prompt_valid: torch.Tensor
    response: torch.Tensor
    answer_len: torch.Tensor


@attrs.frozen
class CorruptedCopy:
    """One corrupted view of a batch: the noisy response, per-position loss weights, and the normaliser
    the weighted cross-entropy sum is divided by."""

    noisy: torch.Tensor  # (N, R) long
    weights: torch.Tensor  # (N, R) float
    normaliser: float
    # (N, R) float or None: the weight p of each noisy token in SPD's hybrid input p E(token) + (1 - p) e_mask
    # (norm-preserving); 1 feeds the plain token embedding. None: every position is fed E(noisy), as DMax trains.
    soft: torch.Tensor | None = None

    def rows(self, part) -> "CorruptedCopy":
        """The copy restricted to the batch rows `part` (a micro-batch); the normaliser stays global."""
        return CorruptedCopy(self.noisy[part], self.weights[part], self.normaliser,
                             None if self.soft is None else self.soft[part])


class Objective(Protocol):
    name: str

    def corrupt(self, model, batch: TrainBatch, block_size: int, gen: torch.Generator) -> list[CorruptedCopy]:
        """Corrupted copies of `batch` for one optimisation step; the loss is the sum over copies."""

    # Optional: `fsdp_refusal() -> str | None`, called by `workbench.training.train` before sharding under --fsdp: why
    # this objective cannot train sharded (the message shown to the user), or None when it can.


def collate(examples, tokenizer, response_len: int, eos_id: int, pad_id: int) -> TrainBatch:
    prompts = [tokenizer(e.prompt, add_special_tokens=False)["input_ids"] for e in examples]
    answers = [tokenizer(e.answer, add_special_tokens=False)["input_ids"] for e in examples]
    width = max(len(p) for p in prompts)
    n = len(examples)
    prompt = torch.full((n, width), pad_id, dtype=torch.long)
    valid = torch.zeros((n, width), dtype=torch.bool)
    response = torch.full((n, response_len), eos_id, dtype=torch.long)
    for i, (p, a) in enumerate(zip(prompts, answers)):
        if len(a) > response_len:
            raise ValueError(f"answer of {len(a)} tokens does not fit response_len {response_len}: {examples[i].answer!r}")
        prompt[i, width - len(p):] = torch.tensor(p)
        valid[i, width - len(p):] = True
        response[i, : len(a)] = torch.tensor(a)
    return TrainBatch(prompt, valid, response, torch.tensor([len(a) for a in answers]))


def response_block_ids(n: int, prompt_len: int, response_len: int, block_size: int, device) -> torch.Tensor:
    """Block ids of [prompt ; response]: the prompt is block 0, response position k is block k // B + 1."""
    resp = torch.arange(response_len, device=device) // block_size + 1
    return torch.cat([torch.zeros(prompt_len, dtype=torch.long, device=device), resp]).expand(n, -1)


def response_logits(model, batch: TrainBatch, noisy: torch.Tensor, block_size: int,
                    soft: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (N, R, V) at the noisy response positions, in the layout the model is decoded with. A model
    with a layout of its own (DiffusionGemma's encoder-decoder) provides `training_logits`. `soft` (N, R):
    feed the noisy half SPD's hybrid inputs with these token weights (`CorruptedCopy.soft`)."""
    inner = getattr(model, "module", model)  # under DDP the wrapper hides the model's attributes
    own = getattr(inner, "training_logits", None)
    if own is not None:
        if soft is not None:
            raise ValueError(f"{type(inner).__name__} trains in a layout of its own "
                             f"and cannot be fed soft (hybrid) inputs; train it with copy_inputs=hard")
        return own(batch.prompt, batch.prompt_valid, noisy, batch.response, block_size)
    n, p = batch.prompt.shape
    r = noisy.shape[1]
    device = noisy.device
    valid = torch.cat([batch.prompt_valid, torch.ones((n, r), dtype=torch.bool, device=device)], dim=1)
    block_ids = response_block_ids(n, p, r, block_size, device)
    positions = position_ids_from_valid(valid)
    if inner.block_causal:  # the layout is the wrapped model's
        # BD3-LM / LLaDA-2.0 layout: [prompt ; noisy ; clean], both response halves share position ids.
        ids = torch.cat([batch.prompt, noisy, batch.response], dim=1)
        mask = block_diffusion_training_mask(block_ids, valid, p)
        positions = torch.cat([positions, positions[:, p:]], dim=1)
    else:
        ids = torch.cat([batch.prompt, noisy], dim=1)
        mask = decode_attention_mask(block_ids, valid, block_causal=False)
    if soft is None:
        logits = model(ids, position_ids=positions, attn_mask=mask)
    else:
        from plugins.embedders import hybrid

        # From the live table, so the gradient reaches E and e_mask; weight 1 feeds the token's own embedding.
        embeds = inner.embedding_table()[ids]
        plain = embeds[:, p : p + r]
        mixed = torch.where((soft < 1)[..., None], hybrid(plain, inner.mask_embedding(), soft), plain)
        embeds = torch.cat([embeds[:, :p], mixed, embeds[:, p + r:]], dim=1)
        logits = model(inputs_embeds=embeds, position_ids=positions, attn_mask=mask)
    return logits[:, p : p + r]


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, copy: CorruptedCopy) -> torch.Tensor:
    ce = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), reduction="none").view_as(target)
    return (ce * copy.weights).sum() / max(copy.normaliser, 1.0)


def answer_plus_eos_block(batch: TrainBatch, block_size: int) -> torch.Tensor:
    """(N, R) float: 1 on answer positions and on the first `block_size` trailing EOS positions (DMax)."""
    positions = torch.arange(batch.response.shape[1], device=batch.response.device)
    return (positions[None] < (batch.answer_len[:, None] + block_size)).float()


def bernoulli_mask(shape, rate: torch.Tensor, gen: torch.Generator, device) -> torch.Tensor:
    """(N, R) bool, each entry True with probability rate[n] (per-sequence rate)."""
    return torch.rand(shape, generator=gen, device=device) < rate[:, None]
