"""Golden transcripts for `wino`: WINO's own sampler, `decoding_wino` in Feng-Hong/WINO-DLLM's `LLaDA/decoding.py`.

    python benchmarks/reference/record_wino.py --upstream /work/refs/WINO-DLLM

Recorded at github.com/Feng-Hong/WINO-DLLM commit 9549a1d0c3cbd9dc9b8f7cd09be8a7aac322d6fb (branch `main`;
`LLaDA/decoding.py` is the file the authors' `eval.py` and `generate.py` call; the MMaDA copy,
`mmu_generate_wino`, is the same loop). Nothing of it is copied here: `decoding.py` is imported from the
checkout as a module of its own (it imports only torch and numpy) and `decoding_wino` makes every decision.

What the transcript covers (`tests/reference/wino/greedy.json`), on 8 prompts of mixed lengths (2-9, ids
4..47), each run alone (upstream is batch-1 only: its top-k and argmax index the flattened batch):

- `default`: the authors' defaults, threshold 0.6 (wide in) and threshold_back 0.9 (narrow out), blocks of 8;
- `wide`: threshold 0.3, threshold_back 0.95: many drafts, many revocations, the max_accept cap and the
  last_accept bound on remasking both bind;
- `block16`: the defaults on blocks of 16 (max_accept = int(0.7 * masks) between 5 and 20 varies).

All greedy (the authors' configs all use temperature 0; with a temperature their Gumbel noise is drawn over
the whole (1, T + L, V) canvas from the global stream, which no workbench stream reproduces).

The shadow block. `decoding_wino` appends a copy of the current block (always MASK, at the block's position
ids) to the canvas and passes a 4-d boolean attention mask: canvas queries never see the copy; copy query j
sees the whole canvas except block position j, and the whole copy. One model call gives both the drafts
(canvas logits) and the verification of every decided token (copy logits). `ShadowView` below runs the
native model's own `forward` with exactly that mask and those position ids; `tiny.UpstreamView` cannot be
used, as it reduces a 4-d mask to its last row and ignores position ids.

Shims (none changes a decision of `decoding_wino`):
- `ShadowView` as the model (`model.device` and `model(x, attention_mask=, position_ids=).logits`);
- forward counts: upstream decodes every block; `nfe` is the forwards up to the end of the block holding
  the first EOS, read off the canvas part of the logged inputs by `tiny.forwards_until_eos_block`, and the
  total is checked against upstream's returned step count.

Checked, not shimmed: upstream keeps the MASK logit, so a MASK argmax can be drafted; it then counts the
position as decided while it holds the mask id, which the workbench cannot express (a token position never
holds the mask id). The recorder refuses to write a case in which any forward's argmax at a masked canvas
position is MASK; the model spec (seed 1, init_std 0.7) was chosen so that none is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

UPSTREAM_REPO = "Feng-Hong/WINO-DLLM"
UPSTREAM_PATH = "LLaDA/decoding.py"
UPSTREAM_FUNCTION = "decoding_wino"
OUT = ROOT / "tests" / "reference" / "wino"
SPEC = tiny.TinySpec(seed=1, init_std=0.7)  # spread confidences, and no MASK argmax at a masked position

# (name, upstream keyword arguments of decoding_wino, workbench strategy params)
CASES = [
    ("default", dict(gen_length=24, block_length=8, threshold=0.6, threshold_back=0.9), {}),
    ("wide", dict(gen_length=24, block_length=8, threshold=0.3, threshold_back=0.95),
     {"threshold": 0.3, "threshold_back": 0.95}),
    ("block16", dict(gen_length=32, block_length=16, threshold=0.6, threshold_back=0.9), {}),
]
REFERENCE_PARAMS = {"mask_logit": "keep"}  # upstream's softmax includes the MASK logit


def load_upstream(upstream: Path):
    """WINO's `LLaDA/decoding.py`, imported from the checkout as a module of its own."""
    return recording.load_module(upstream, UPSTREAM_PATH, "wino_decoding", UPSTREAM_REPO)


class ShadowView(tiny.UpstreamView):
    """The tiny model answering WINO's call: input ids (1, T + L), a (1, 1, T + L, T + L) bool attention mask
    and (T + L,) position ids, passed unchanged to the native model's `forward`. `canvas` = T: the part of
    the input that is the canvas (the rest is the shadow block); `mask_tops` counts MASK argmaxes at masked
    canvas positions (see the module docstring)."""

    def __init__(self, model, canvas: int):
        super().__init__(model)
        self.canvas, self.mask_tops = canvas, 0

    def __call__(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        n, t = input_ids.shape
        self.calls += 1
        self.log.append(input_ids[:, :self.canvas].detach().clone())
        with torch.no_grad():
            logits = self.model(inputs_embeds=self.model.embedding_table()[input_ids],
                                position_ids=position_ids.view(1, t).expand(n, t), attn_mask=attention_mask.bool())
        canvas_ids, top = input_ids[:, :self.canvas], logits[:, :self.canvas].argmax(-1)
        self.mask_tops += int(((canvas_ids == tiny.MASK) & (top == tiny.MASK)).sum())
        return SimpleNamespace(logits=logits)


def run_upstream(up, model, prompts: list[list[int]], settings: dict) -> list[dict]:
    """Per prompt, alone: {ids cut after EOS, nfe until the end of the EOS block}."""
    rows = []
    for i, prompt in enumerate(prompts):
        view = ShadowView(model, len(prompt) + settings["gen_length"])
        out, steps = up.decoding_wino(view, torch.tensor([prompt]), mask_id=tiny.MASK, temperature=0.0, **settings)
        if view.mask_tops:
            sys.exit(f"prompt {i}: upstream's argmax was MASK at a masked position {view.mask_tops} times; "
                     "the workbench cannot replay a drafted MASK: choose another TinySpec")
        assert int(steps) == view.calls, (int(steps), view.calls)
        generated = out[0, len(prompt):].tolist()
        nfe = tiny.forwards_until_eos_block(view.log, 0, len(prompt), generated, settings["block_length"])
        rows.append({"ids": tiny.cut_after_eos(generated), "nfe": nfe})
    return rows


def record(up, commit: str) -> dict:
    model = tiny.build(SPEC)
    prompts = recording.prompts(SPEC.vocab_size)
    cases = []
    for name, settings, params in CASES:
        rows = run_upstream(up, model, prompts, settings)
        cases.append({"name": name,
                      "upstream_settings": {**settings, "temperature": 0.0, "mask_id": tiny.MASK},
                      "workbench": {"params": {**params, **REFERENCE_PARAMS},
                                    "decode": {"block_size": settings["block_length"],
                                               "max_new_tokens": settings["gen_length"]}},
                      "prompts": prompts, "batch1": rows})
    upstream = recording.source(UPSTREAM_REPO, commit, UPSTREAM_PATH, UPSTREAM_FUNCTION)
    return recording.transcript("wino", upstream, __file__, cases, model=tiny.described(SPEC, model),
                                note="greedy WINO (wide-in threshold, narrow-out verification on the shadow block), "
                                     "batch 1 only upstream; the workbench's batch-8 replay must equal its batch-1 "
                                     "rows")


def main() -> None:
    recording.record_main(__doc__, "a checkout of github.com/Feng-Hong/WINO-DLLM", OUT,
                          "folder of the transcript (default: %(default)s)", load_upstream, {"greedy": record},
                          only=False, divergences=False)  # WINO's transcript lists no divergences


if __name__ == "__main__":
    main()
