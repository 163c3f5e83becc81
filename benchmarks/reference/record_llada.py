"""Golden transcripts for `llada`: LLaDA's own sampler, `generate` in ML-GSAI/LLaDA's `generate.py`.

    python benchmarks/reference/record_llada.py --upstream /work/refs/LLaDA

Recorded at github.com/ML-GSAI/LLaDA commit b7e6c3565f194352da44b38dd12b6970597309f3 (`generate.py` last
changed in 65cbed2, October 2025: the version with `attention_mask`, `logits_eos_inf` and
`confidence_eos_eot_inf`). Nothing of it is copied here: `generate.py` is imported from the checkout as a
module of its own (its import of transformers' AutoModel / AutoTokenizer is harmless; `main()` with its
`.cuda()` model is never called) and `generate` makes every decision.

What each transcript covers (`tests/reference/llada/`), all on the same 8 prompts (lengths 2-9, ids 4..47):

- `greedy.json`: low-confidence remasking at one token per step (the published default ratio, steps =
  gen_length), an uneven `get_num_transfer_tokens` schedule (3 steps per block of 8: 3, 3, 2 tokens),
  half the steps (steps_per_token 0.5), and classifier-free guidance (cfg_scale 0.5, the lm-eval scripts'
  value); each with the authors' own left-padded batch (`batch8`).
- `sampled.json`: temperature 0.7 (Gumbel noise in float64 over the whole canvas) and random remasking,
  prompt i seeded with `sample_seed(0, i)` (the workbench's per-sample streams); and both together on one
  global stream (`rng: batch`), where the authors' batched run is seeded once and its draws cover the
  whole padded batch.
- `eos.json`: `logits_eos_inf` and `confidence_eos_eot_inf`, greedy (see the vocabulary shim below).

On this model (init_std 0.5) upstream's argmax is sometimes the MASK token (generate keeps the MASK logit):
a selected MASK is "transferred", the position stays masked, and the block can end with masks left, which
upstream's top-k ranks again in later blocks. The workbench cannot reopen a committed block; every row where
a later block filled such a position is listed under `divergences` with that cause (the recorder finds them
from upstream's own inputs, `carried_over`).

Shims (none changes a decision of `generate`):
- the model is `tiny.UpstreamView` (the workbench's native model answering `model(x, attention_mask).logits`;
  position ids skip left padding, so a padded row computes what it computes alone: LLaDA's own modelling
  code counts positions from the padded start);
- batch-1 runs with `cfg_scale > 0` pass an all-ones `attention_mask`: upstream builds the doubled mask
  (`attention_mask_`) only when a mask is given and otherwise stops with UnboundLocalError;
- `EosVocabView` for `eos.json`: upstream hard-codes LLaDA-8B's ids (EOS 126081, EoT 126348), which a
  48-token model does not have. The view answers with 126349 logits: the tiny model's logits at their own
  ids, the tiny EOS (2) at 126081, the tiny UNK (3, standing in for EoT) at 126348, every other entry -inf;
  input ids are mapped back before the forward and outputs after. The -inf entries change no argmax and
  no probability; temperature stays 0 there (a Gumbel draw over 126349 entries is not the workbench's).
- forward counts: upstream decodes every block; `nfe` is the forwards up to the end of the block holding
  the first EOS (`steps // num_blocks` per block), checked against `tiny.forwards_until_eos_block` where no
  MASK is left behind.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

import recording  # beside this script (its folder heads sys.path when it runs), as tiny is
import tiny
from recording import ROOT

from workbench.decoding.rng import sample_seed

UPSTREAM_REPO = "ML-GSAI/LLaDA"
UPSTREAM_PATH = "generate.py"
UPSTREAM_FUNCTION = "generate"
OUT = ROOT / "tests" / "reference" / "llada"
SEED = 0  # DecodeConfig.seed of the sampled cases
LLADA_EOS, LLADA_EOT = 126081, 126348  # hard-coded in upstream's generate (LLaDA-8B's <|endoftext|>, <|eot_id|>)
TINY_EOT = tiny.EOS + 1  # the tiny model's UNK (3) plays LLaDA's EoT in eos.json
# Upstream keeps the MASK logit in its softmax and argmax; the workbench's default removes it.
REFERENCE_PARAMS = {"mask_logit": "keep"}

# Upstream keyword arguments of `generate` and the workbench settings expected to reproduce them.
# Greedy defaults: remasking low_confidence, temperature 0, cfg 0, both EOS switches off (generate's signature).
GREEDY = [
    ("low_confidence", dict(steps=16, gen_length=16, block_length=8), {}),
    ("uneven_schedule", dict(steps=6, gen_length=16, block_length=8), {"steps": 6}),
    ("half_steps", dict(steps=12, gen_length=24, block_length=8), {"steps_per_token": 0.5}),
    ("cfg", dict(steps=16, gen_length=16, block_length=8, cfg_scale=0.5), {"cfg_scale": 0.5}),
]
SAMPLED = [  # (name, upstream, params, rng)
    ("temperature", dict(steps=16, gen_length=16, block_length=8, temperature=0.7), {"temperature": 0.7}, "sample"),
    ("random_remasking", dict(steps=8, gen_length=16, block_length=8, remasking="random"),
     {"steps": 8, "remasking": "random"}, "sample"),
    ("batch_stream", dict(steps=8, gen_length=16, block_length=8, temperature=0.7, remasking="random"),
     {"steps": 8, "temperature": 0.7, "remasking": "random"}, "batch"),
]
EOS_CASES = [
    ("logits_eos_inf", dict(steps=16, gen_length=16, block_length=8, logits_eos_inf=True),
     {"logits_eos_inf": True}),
    ("confidence_eos_eot_inf", dict(steps=16, gen_length=16, block_length=8, confidence_eos_eot_inf=True),
     {"confidence_eos_eot_inf": True, "eot_id": TINY_EOT}),
]


def load_upstream(upstream: Path):
    """LLaDA's `generate.py`, imported from the checkout as a module of its own."""
    return recording.load_module(upstream, UPSTREAM_PATH, "llada_generate", UPSTREAM_REPO)


class EosVocabView(tiny.UpstreamView):
    """The tiny model with LLaDA-8B's EOS / EoT ids (see the module docstring): logits over 126349 ids."""

    VOCAB = LLADA_EOT + 1
    TO_BIG = {tiny.EOS: LLADA_EOS, TINY_EOT: LLADA_EOT}

    def __call__(self, input_ids, attention_mask=None, *args, **kwargs):
        small = input_ids.clone()
        for tiny_id, big in self.TO_BIG.items():
            small[input_ids == big] = tiny_id
        logits = super().__call__(small, attention_mask).logits  # (N, T, V_tiny)
        big = torch.full((*logits.shape[:2], self.VOCAB), -torch.inf, dtype=logits.dtype)
        big[..., :logits.shape[-1]] = logits
        for tiny_id, big_id in self.TO_BIG.items():
            big[..., big_id] = logits[..., tiny_id]
            big[..., tiny_id] = -torch.inf
        return SimpleNamespace(logits=big)

    @classmethod
    def to_tiny(cls, ids: list[int]) -> list[int]:
        back = {b: t for t, b in cls.TO_BIG.items()}
        return [back.get(i, i) for i in ids]


def carried_over(log: list[torch.Tensor], row: int, start: int, final: list[int], settings: dict) -> bool:
    """Whether upstream filled, in a later block, a position its own block left masked (a MASK argmax was
    "transferred" there), within the output the workbench keeps (up to the first EOS). The workbench commits
    a block with such positions masked and never reopens them (see the notes), so these rows diverge."""
    block, gen = settings["block_length"], settings["gen_length"]
    spb = settings["steps"] // (gen // block)
    kept = len(tiny.cut_after_eos(final))
    for b in range(gen // block - 1):
        after = log[(b + 1) * spb][row, start:start + gen].tolist()  # the canvas when block b + 1 starts
        if any(after[j] == tiny.MASK and final[j] != tiny.MASK for j in range(min((b + 1) * block, kept))):
            return True
    return False


def run_upstream(up, view, prompts: list[list[int]], settings: dict, seeds: list[int] | None, batched_seed):
    """batch-1 rows ({ids cut after EOS, nfe until the EOS block}, carried over?) and the left-padded batched
    run's (ids, carried over?) per row."""
    steps_per_block = settings["steps"] // (settings["gen_length"] // settings["block_length"])
    block = settings["block_length"]
    to_tiny = view.to_tiny if isinstance(view, EosVocabView) else (lambda ids: ids)
    rows, carried = [], []
    for i, prompt in enumerate(prompts):
        if seeds is not None:
            torch.manual_seed(seeds[i])
        view.reset()
        x = torch.tensor([prompt])
        mask = torch.ones_like(x) if settings.get("cfg_scale", 0) > 0 else None  # upstream needs it with cfg
        out = up.generate(view, x, attention_mask=mask, mask_id=tiny.MASK, **settings)
        generated = to_tiny(out[0, len(prompt):].tolist())
        ids = tiny.cut_after_eos(generated)
        assert view.calls == settings["steps"], (view.calls, settings)
        eos_block = (len(ids) - 1) // block if tiny.EOS in ids else len(generated) // block - 1
        nfe = steps_per_block * (eos_block + 1)
        if tiny.MASK not in generated:  # the shared helper reads blocks off the inputs' masks
            assert nfe == tiny.forwards_until_eos_block(view.log, 0, len(prompt), generated, block), (i, nfe)
        rows.append({"ids": ids, "nfe": nfe})
        carried.append(carried_over(view.log, 0, len(prompt), generated, settings))
    width, x, mask = recording.left_padded(prompts, tiny.PAD)
    if batched_seed is not None:
        torch.manual_seed(batched_seed)
    view.reset()
    out = up.generate(view, x, attention_mask=mask, mask_id=tiny.MASK, **settings)
    outputs = [to_tiny(out[i, width:].tolist()) for i in range(len(prompts))]
    batch8 = [tiny.cut_after_eos(o) for o in outputs]
    batch_carried = [carried_over(view.log, i, width, o, settings) for i, o in enumerate(outputs)]
    return rows, carried, batch8, batch_carried


def case_of(name, upstream_settings, params, decode, prompts, rows, batch8, divergences=()):
    case = {"name": name, "upstream_settings": {**upstream_settings, "mask_id": tiny.MASK},
            "workbench": {"params": {**params, **REFERENCE_PARAMS}, "decode": decode}, "prompts": prompts, "batch1": rows,
            "batch8": batch8}
    if divergences:
        case["divergences"] = list(divergences)
    return case


def transcript(commit: str, spec: tiny.TinySpec, model, cases: list[dict], note: str) -> dict:
    upstream = recording.source(UPSTREAM_REPO, commit, UPSTREAM_PATH, UPSTREAM_FUNCTION)
    return recording.transcript("llada", upstream, __file__, cases, note=note, model=tiny.described(spec, model))


CARRY = ("upstream transferred a MASK argmax here, so its block ended with the position masked, and a later block "
         "filled it (its top-k still ranks the masks of earlier blocks); the workbench commits the block with the "
         "position masked and never reopens it")
STREAM = ("upstream's batched run draws from one global stream for the whole batch, so a row's draws depend on "
          "the batch; per-sample streams match the batch-1 runs, and the batch_stream case (rng=batch) the batched one")
BATCH_STREAM = ("rng=batch: one generator for the whole batch, so a row decoded in the batch differs from the row "
                "alone; the batched decode is checked against the authors' batched run (`batch8`)")
TIES = "torch.topk's order among tied confidences depends on the row's length and offset, which left padding changes"


def divergences(rows, carried, batch8, batch_carried, *, spb: int, block: int, rng: str, sampled: bool) -> list:
    """Every row the workbench cannot match, by mode, with its cause (check_case requires them to differ)."""
    found: dict[tuple[int, str], list[str]] = {}
    for i, (row, ids) in enumerate(zip(rows, batch8)):
        batch_nfe = spb * ((len(ids) - 1) // block + 1 if tiny.EOS in ids else len(row["ids"]) // block)
        if rng == "batch":
            if carried[i]:
                found.setdefault((i, "batch1"), []).append(CARRY)
            if batch_carried[i]:
                found.setdefault((i, "batch8"), []).append(CARRY)
                found.setdefault((i, "upstream-batch8"), []).append(CARRY)
            if (ids, batch_nfe) != (row["ids"], row["nfe"]):
                found.setdefault((i, "batch8"), []).append(BATCH_STREAM)
            continue
        if carried[i]:
            found.setdefault((i, "any"), []).append(CARRY)
        if batch_carried[i]:
            found.setdefault((i, "upstream-batch8"), []).append(CARRY)
        if ids != row["ids"]:
            found.setdefault((i, "upstream-batch8"), []).append(STREAM if sampled else TIES)
    return [{"row": i, "mode": mode, "cause": "; ".join(dict.fromkeys(causes))}
            for (i, mode), causes in sorted(found.items())]


def record(up, commit: str, view_of, cases, note: str) -> dict:
    """One transcript: each case run by upstream alone per prompt and as one left-padded batch."""
    spec = tiny.TinySpec(seed=0, init_std=0.5)
    model = tiny.build(spec)
    prompts = recording.prompts(spec.vocab_size)
    out = []
    for name, settings, params, rng in cases:
        sampled = settings.get("temperature", 0) > 0 or settings.get("remasking") == "random"
        seeds = None
        if sampled:
            seeds = [sample_seed(SEED, i) if rng == "sample" else SEED for i in range(len(prompts))]
        rows, carried, batch8, batch_carried = run_upstream(up, view_of(model), prompts, settings, seeds,
                                                            SEED if sampled else None)
        block = settings["block_length"]
        spb = settings["steps"] // (settings["gen_length"] // block)
        found = divergences(rows, carried, batch8, batch_carried, spb=spb, block=block, rng=rng, sampled=sampled)
        decode = {"block_size": block, "max_new_tokens": settings["gen_length"]}
        if sampled:
            decode.update(rng=rng, seed=SEED)
        out.append(case_of(name, settings, params, decode, prompts, rows, batch8, found))
    return transcript(commit, spec, model, out, note)


def record_greedy(up, commit: str) -> dict:
    return record(up, commit, tiny.UpstreamView, [(*c, "sample") for c in GREEDY],
                  "greedy low-confidence remasking, transfer schedules and classifier-free guidance")


def record_sampled(up, commit: str) -> dict:
    return record(up, commit, tiny.UpstreamView, SAMPLED,
                  "Gumbel-noise sampling and random remasking, on per-sample streams and on one batch stream")


def record_eos(up, commit: str) -> dict:
    return record(up, commit, EosVocabView, [(*c, "sample") for c in EOS_CASES],
                  f"LLaDA's EOS switches (paper, Appendix B.4) through EosVocabView: upstream's ids {LLADA_EOS} / "
                  f"{LLADA_EOT} are the tiny model's {tiny.EOS} / {TINY_EOT}")


RECORDERS = {"greedy": record_greedy, "sampled": record_sampled, "eos": record_eos}


def main() -> None:
    recording.record_main(__doc__, "a checkout of github.com/ML-GSAI/LLaDA", OUT,
                          "folder of the transcripts (default: %(default)s)", load_upstream, RECORDERS)


if __name__ == "__main__":
    main()
