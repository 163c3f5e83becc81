"""Tokens per second of one batch of 64 prompts vs the same prompts decoded one at a time (batch 1).

Same model (default size, block-causal, exact prefix cache: the default `cache=auto`), threshold
decoding (tau 0.9), prompts of different lengths (left padding), 64 generated tokens in blocks of 32.
Batch 1 decodes the first `--single` prompts one by one (its tokens per second is a rate, so a subset
suffices); how many of them reproduce the batch's tokens is printed (all of them in float32 on the CPU;
batched GPU kernels may round differently in bfloat16, and the float64 batch-invariance property is the
test suite's). Runs on CUDA when present, else the CPU.

    python benchmarks/batch_throughput.py [--batch 64] [--single 8] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

import _common as C
from workbench.decoding.loop import generate
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--single", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default="auto")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    C.add_precision_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = C.model(dtype=args.dtype, hidden_size=args.hidden, num_layers=args.layers)
    prompts = C.prompts(args.batch, args.prompt_len, vary=7)
    config = DecodeConfig(block_size=args.block, max_new_tokens=args.new, cache=args.cache)

    def run(batch):
        return generate(model, batch, make_manager("threshold", params=C.FAST_DLLM), config)

    run(prompts[:2])  # warm-up
    batched, t_batch = C.timed(lambda: run(prompts))
    singles, t_single = C.timed(lambda: [run([p])[0] for p in prompts[:args.single]])
    same = sum(a.ids == b.ids for a, b in zip(singles, batched))
    tps_batch = sum(r.tokens for r in batched) / t_batch
    tps_single = sum(r.tokens for r in singles) / t_single
    print(f"device: {C.machine()}; {C.params(model)}, {model.embedding_table().dtype}; prompts "
          f"{args.prompt_len - 7}-{args.prompt_len} tokens, new {args.new}, block {args.block}, cache {args.cache}")
    print(f"batch {args.batch}: {tps_batch:.0f} tokens/s; batch 1: {tps_single:.0f} tokens/s "
          f"-> ratio {tps_batch / tps_single:.1f}x (target >= 20x on a GPU); batch-1 tokens equal the batch's "
          f"for {same}/{len(singles)} prompts")


if __name__ == "__main__":
    main()
