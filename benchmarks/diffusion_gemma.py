"""DiffusionGemma: the workbench's `uniform-eb` against transformers' own `generate`, side by side in one run.

Same tiny random-weight `DiffusionGemmaForBlockDiffusion` (the real architecture, built from a config), same
prompts, same seeds. For batch 1 (per-sample streams, seeded as `generate` is) and for a batch (the batch
stream), with `--new` new tokens (a multiple of the canvas) and `--partial` (not one: `generate` denoises a
whole last canvas and the workbench, `last_block=full` as on every DiffusionGemma model, does the same and
cuts; one more row shows the `short` last block for comparison), it prints the identical-token rate
(positions where the two outputs agree, over the longer output, both cut to the new tokens asked for), the
share of rows that are identical, separately for the batches where no row ends before the batch's last
canvas (exact parity expected) and the others (generate keeps denoising a finished row, whose draws move the
shared stream, so the later rows of such a batch diverge), the rows whose decoder-forward count equals
generate's, decoder forwards per block of both, and the tokens/s ratio workbench / generate (tokens as
generate counts them: generated tokens up to and including EOS, per second of decoding, best of
`--repeats`; `--repeats 0` skips the timing).

    python benchmarks/diffusion_gemma.py [--vocab 512] [--canvas 8] [--new 32] [--partial 27] [--steps 10] [--batch 8]
"""

from __future__ import annotations

import argparse

import torch

import _common as C
from workbench.decoding.loop import generate
from workbench.models.diffusion_gemma import DiffusionGemmaDenoiser, build_random_diffusion_gemma
from workbench.decoding.registry import make_manager
from workbench.decoding.rng import sample_seed
from workbench.decoding.state import DecodeConfig

EOS = 2


def cut(ids: list[int]) -> list[int]:
    return ids[:ids.index(EOS) + 1] if EOS in ids else ids


def reference(model, prompts: torch.Tensor, seed: int, new: int, settings: dict):
    """(ids cut to `new` and after EOS, decoder forwards) per row of `generate`, which returns whole canvases."""
    torch.manual_seed(seed)
    out = model.generate(prompts, max_new_tokens=new, **settings)
    rows = []
    for i in range(prompts.shape[0]):
        ids = out.sequences[i, prompts.shape[1]:].tolist()
        kept = sum(t != 0 for t in ids)
        rows.append((cut(ids[:new]), round(kept / float(out.tokens_per_forward[i]))))
    return rows


def ours(denoiser, prompts: torch.Tensor, seed: int, new: int, settings: dict, rng: str, last_block: str):
    config = DecodeConfig(block_size=denoiser.canvas_length, max_new_tokens=new, rng=rng, seed=seed,
                          max_forwards_per_block=settings["max_denoising_steps"], last_block=last_block)
    results = generate(denoiser, prompts.tolist(), make_manager("uniform-eb", params=settings), config)
    return [(r.ids, r.nfe) for r in results]


def agreement(a, b) -> tuple[int, int, int]:
    """(identical positions, compared positions, identical rows)."""
    same = total = rows = 0
    for (x, _), (y, _) in zip(a, b):
        length = max(len(x), len(y))
        same += sum(1 for i in range(min(len(x), len(y))) if x[i] == y[i])
        total += length
        rows += x == y
    return same, total, rows


def best_time(fn, repeats: int) -> float:
    return min(C.timed(fn)[1] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--canvas", type=int, default=8)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--partial", type=int, default=27,
                        help="new tokens that are not a multiple of the canvas (0: skip those rows)")
    parser.add_argument("--steps", type=int, default=10, help="max_denoising_steps")
    parser.add_argument("--confidence", type=float, default=4.0,
                        help="confidence_threshold (mean entropy); a random model stops early only when it is high")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=10, help="decodes per setting (one seed each)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per decode (0: no timing)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_random_diffusion_gemma(args.vocab, canvas_length=args.canvas, seed=1)
    denoiser = DiffusionGemmaDenoiser(model)
    settings = dict(max_denoising_steps=args.steps, stability_threshold=1, confidence_threshold=args.confidence)
    print(f"{C.machine()}; DiffusionGemma {sum(p.numel() for p in model.parameters()) / 1e3:.0f}k params, vocab "
          f"{args.vocab}, canvas {args.canvas}, {settings}")
    print("| new tokens | last block | rows | stream | identical tokens | identical rows | identical rows, batches "
          "without an early end | rows with generate's forward count | forwards per block (workbench / generate) "
          "| tokens/s workbench / generate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    cases = [(args.new, "full", 1, "sample"), (args.new, "full", args.batch, "batch")]
    if args.partial:
        cases += [(args.partial, "full", 1, "sample"), (args.partial, "full", args.batch, "batch"),
                  (args.partial, "short", 1, "sample")]
    for new, last_block, batch, rng in cases:
        same = total = rows = n_rows = clean_rows = clean_n = same_nfe = 0
        fw_ours = fw_ref = blocks = 0
        ref_time = our_time = tokens = 0.0
        for seed in range(args.seeds):
            prompts = torch.randint(4, args.vocab, (batch, 5), generator=torch.Generator().manual_seed(seed))
            ref_seed = sample_seed(seed, 0) if rng == "sample" else seed
            a = reference(model, prompts, ref_seed, new, settings)
            b = ours(denoiser, prompts, seed, new, settings, rng, last_block)
            s, t, r = agreement(a, b)
            same, total, rows, n_rows = same + s, total + t, rows + r, n_rows + batch
            same_nfe += sum(x[1] == y[1] for x, y in zip(a, b))
            last = (new - 1) // args.canvas * args.canvas  # start of the last canvas
            if all(len(ids) > last for ids, _ in a):  # no row ends before the batch's last canvas
                clean_rows, clean_n = clean_rows + r, clean_n + batch
            fw_ours += sum(f for _, f in b)
            fw_ref += sum(f for _, f in a)
            blocks += sum(-(-len(ids) // args.canvas) for ids, _ in a)
            tokens += sum(len(ids) for ids, _ in a)
            if args.repeats:
                ref_time += best_time(lambda: reference(model, prompts, ref_seed, new, settings), args.repeats)
                our_time += best_time(lambda: ours(denoiser, prompts, seed, new, settings, rng, last_block),
                                      args.repeats)
        speed = f"{(tokens / our_time) / (tokens / ref_time):.2f}" if args.repeats else "–"
        print(f"| {new} | {last_block} | {batch} | {rng} | {100 * same / total:.1f} % | {rows}/{n_rows} | "
              f"{clean_rows}/{clean_n} | {same_nfe}/{n_rows} | {fw_ours / blocks:.2f} / {fw_ref / blocks:.2f} | "
              f"{speed} |")


if __name__ == "__main__":
    main()
