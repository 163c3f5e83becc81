"""The tiny random model every golden transcript is recorded on, and the view upstream samplers call.

A transcript (`tests/reference/<strategy>/*.json`) must be replayable in CI without the authors' code, so
the model is the workbench's own native transformer, bidirectional, built from a seed and a handful of
config numbers (`TinySpec`): the recorder runs the authors' sampler on it through `UpstreamView`, which
answers `model(input_ids, attention_mask=...)` the way a Hugging Face dLLM does, and the test decodes the
same weights with the workbench. Samplers that only need logits (LLaDA's `generate` and the samplers built
on it) see exactly the logits the workbench sees.

`checksum(model)` is stored with each transcript: if torch ever initialises the seed differently, the test
says that the model changed instead of reporting a decoding mismatch.

Nothing here imports upstream code; recorders do, from a checkout outside the repository.
"""

from __future__ import annotations

from types import SimpleNamespace

import attrs
import torch

from workbench.models.native import NativeDenoiser, build_random_model

PAD, MASK, EOS = 0, 1, 2  # the native model's special ids (its tokenizer reserves 0-3)


@attrs.frozen(kw_only=True)
class TinySpec:
    """What builds a transcript's model: `build(spec)` is deterministic on the CPU for a torch version.

    `init_std` is the normal init's std; at 0.02 a random model's distributions are nearly uniform, so
    recorders use larger values to get confident, peaked predictions that thresholds can act on.
    """

    seed: int = 0
    vocab_size: int = 48
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 4
    init_std: float = 0.5
    dtype: str = "float32"
    block_causal: bool = False

    def as_json(self) -> dict:
        return attrs.asdict(self)


def build(spec: TinySpec | dict) -> NativeDenoiser:
    """The spec's model, in evaluation mode, on the CPU."""
    spec = spec if isinstance(spec, TinySpec) else TinySpec(**{k: v for k, v in spec.items() if k != "checksum"})
    return build_random_model(spec.vocab_size, seed=spec.seed, dtype=getattr(torch, spec.dtype),
                              hidden_size=spec.hidden_size, num_layers=spec.num_layers, num_heads=spec.num_heads,
                              initializer_range=spec.init_std, block_causal=spec.block_causal,
                              mask_token_id=MASK, eos_token_id=EOS, pad_token_id=PAD)


@torch.no_grad()
def checksum(model: NativeDenoiser) -> float:
    """A fingerprint of the weights through the forward: the sum of |logits| on a fixed canvas, rounded."""
    ids = (torch.arange(12) * 7 % model.vocab_size).view(1, -1)
    return round(float(model(ids).abs().double().sum()), 4)


def described(spec: TinySpec, model: NativeDenoiser) -> dict:
    """A transcript's `model` entry: the spec `build` reads back, and the checksum that proves it did."""
    return {**spec.as_json(), "checksum": checksum(model)}


class UpstreamView:
    """`model(input_ids, attention_mask=None)` -> `.logits`, as the authors' samplers call a HF dLLM.

    The forward is the native model's `denoise` on hard ids with full (bidirectional) attention; an
    `attention_mask` (N, T) marks left padding, which position ids skip (so a padded row computes what it
    computes alone, as in the workbench). `calls` counts forwards; `log` keeps, per forward, the input ids,
    from which `forwards_until` recovers per-row forward counts. `shift=True` returns Dream's convention:
    the logits at position i predict token i + 1, so Dream's `cat([logits[:, :1], logits[:, :-1]])`
    recovers the unshifted logits the workbench reads.
    """

    def __init__(self, model: NativeDenoiser, *, shift: bool = False):
        self.model, self.shift = model, shift
        self.calls, self.log = 0, []
        self.device = model.embed.weight.device
        self.dtype = model.embed.weight.dtype
        self.config = SimpleNamespace(mask_token_id=MASK, eos_token_id=EOS, pad_token_id=PAD,
                                      vocab_size=model.vocab_size)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):
        valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        if valid.dim() > 2:  # a (N, 1, T, T) 4-d mask: keep the key-padding row
            valid = valid.reshape(valid.shape[0], -1, valid.shape[-1])[:, -1].bool()
        self.calls += 1
        self.log.append(input_ids.detach().clone())
        embeds = self.model.embedding_table()[input_ids]
        with torch.no_grad():
            logits = self.model.denoise(embeds, block_ids=torch.zeros_like(input_ids), valid=valid)
        if self.shift:  # position i holds the prediction for i + 1; the last position predicts nothing
            logits = torch.cat([logits[:, 1:], logits[:, -1:]], dim=1)
        return SimpleNamespace(logits=logits)

    forward = __call__

    def eval(self):
        return self

    def reset(self) -> None:
        self.calls, self.log = 0, []


def cut_after_eos(ids: list[int], eos: int = EOS) -> list[int]:
    """ids up to and including the first EOS: the workbench's output convention (everything after counts
    as EOS, and a row stops after the block that holds it)."""
    return ids[:ids.index(eos) + 1] if eos in ids else ids


def forwards_until_eos_block(log: list[torch.Tensor], row: int, prompt_len: int, generated: list[int],
                             block_size: int) -> int:
    """Forwards an upstream batch-1 run spent up to the end of the block holding its first EOS.

    The workbench stops a row after that block; the authors' loops run every block. A forward belongs to
    the block being decoded, read off its input: the leftmost generated block that still holds a MASK
    (a forward with no MASK left is counted for the last block it could belong to)."""
    ends = len(generated) if EOS not in generated else generated.index(EOS) + 1
    last_block = (ends - 1) // block_size
    count = 0
    for ids in log:
        gen = ids[row, prompt_len:].tolist()
        masked = [b for b in range(0, len(gen), block_size) if MASK in gen[b:b + block_size]]
        block = masked[0] // block_size if masked else (len(gen) - 1) // block_size
        count += block <= last_block
    return count
