"""Cached vs uncached decoding on the same model and prompts, measured side by side in one run.

Block-causal model: the exact prefix cache (`cache=prefix`) must give token-identical outputs and NFE
to `cache=none`; asserted on a float64 copy of the model (exact arithmetic up to summation order, so a
near-tied argmax cannot flip), then timed in the working dtype (`--dtype`, bfloat16 on CUDA) where the
agreement is printed. Bidirectional model: Fast-dLLM's approximate prefix and dual caches vs none
(tokens may differ; the agreement is printed). Default: the default-size model (vocab 90, hidden 128,
4 layers), 256 generated tokens, block 32, threshold decoding (tau 0.9, Fast-dLLM's default). Runs on
CUDA when present, else the CPU.

    python benchmarks/cache_speedup.py [--batch 1] [--prompt-len 64] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import _common as C
from workbench.runtime.placement import resolve
from workbench.decoding.loop import generate
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new", type=int, default=256)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--skip-bidirectional", action="store_true")
    C.add_precision_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts = C.prompts(args.batch, args.prompt_len, vary=3)
    dtype = resolve("auto", args.dtype).dtype
    print(f"device: {C.machine()}; batch {args.batch}, prompt {args.prompt_len}, new {args.new}, "
          f"block {args.block}, hidden {args.hidden}, layers {args.layers}, {dtype}, threshold tau 0.9")

    layouts = [(True, ("none", "prefix"))] + ([] if args.skip_bidirectional else [(False, ("none", "prefix", "dual"))])
    for block_causal, modes in layouts:
        size = dict(block_causal=block_causal, hidden_size=args.hidden, num_layers=args.layers)

        def run(mode, model=None):
            config = DecodeConfig(block_size=args.block, max_new_tokens=args.new, cache=mode)
            return generate(model or timed_model, prompts, make_manager("threshold", params=C.FAST_DLLM), config)

        if block_causal:  # exactness, on a float64 copy
            exact = C.model(dtype="float64", **size)
            ref, cached = run("none", exact), run("prefix", exact)
            assert [r.ids for r in ref] == [r.ids for r in cached] and [r.nfe for r in ref] == [r.nfe for r in cached], \
                "the exact cache changed the float64 decode"
            print(f"block-causal, float64: cached and uncached decodes are token- and NFE-identical "
                  f"({sum(len(r.ids) for r in ref)} tokens)")
            del exact
        timed_model = C.model(dtype=dtype, **size)

        times: dict[str, list[float]] = {m: [] for m in modes}
        outputs = {m: run(m) for m in modes}  # warm-up, and the outputs compared below
        for _ in range(args.repeats):  # interleaved, so load drifts hit every mode alike
            for m in modes:
                times[m].append(C.timed(lambda: run(m))[1])
        base = outputs["none"]
        nfe = sum(r.nfe for r in base)
        label = f"{C.params(timed_model)}, " + ("block-causal (exact)" if block_causal else "bidirectional (approximate)")
        for m in modes[1:]:
            same = [r.ids for r in outputs[m]] == [r.ids for r in base]
            ratio = statistics.median(times["none"]) / statistics.median(times[m])
            paired = statistics.median(a / b for a, b in zip(times["none"], times[m]))
            print(f"{label}: none {statistics.median(times['none']) * 1e3:.0f} ms vs {m} "
                  f"{statistics.median(times[m]) * 1e3:.0f} ms -> speed-up {ratio:.2f}x (paired median "
                  f"{paired:.2f}x); NFE {nfe}; tokens identical in {dtype}: {same}")


if __name__ == "__main__":
    main()
