"""The decode loop's own overhead: forwards per second achieved while decoding vs a bare loop of the
same model's forward on the same shapes.

One decode is recorded (every forward's inputs: shapes, positions, masks, cache sizes); the bare loop
replays exactly those forwards back to back, with nothing else (no hooks, no predictions, no state).
Ratio = achieved / bare forwards per second (target >= 0.9). Also printed: the tensor operations the decode
step dispatches outside the forward vs inside it, counted with a TorchDispatchMode. That count does not
depend on the machine: where every op costs about one kernel launch (small models on a GPU), the ratio
is close to forward ops / (forward ops + step ops). Default: default-size model, block-causal,
the default runner (`cache=auto`: exact prefix cache), SPD, prompts of 64 tokens, 128 new tokens in
blocks of 32. Runs on CUDA when present, else the CPU.

    python benchmarks/loop_overhead.py [--batch 1] [--cache auto] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import _common as C
from workbench.decoding.cache import KVCache, make_runner
from workbench.decoding.loop import generate
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig


class Recorder:
    """The model, with every forward's arguments copied."""

    def __init__(self, model):
        self.model, self.calls, self.depth, self.copying = model, [], 0, False

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _forward(self, fn, inputs_embeds, kw):
        self.depth += 1  # the op counter's "inside the forward"
        try:
            return fn(inputs_embeds, **kw)
        finally:
            self.depth -= 1

    def _copy(self, x):
        self.copying = True  # the recording's own copy is neither the step's op nor the forward's
        try:
            return x.clone()
        finally:
            self.copying = False

    def denoise(self, inputs_embeds, **kw):
        self.calls.append(("denoise", self._copy(inputs_embeds), dict(kw)))
        return self._forward(self.model.denoise, inputs_embeds, kw)

    def denoise_kv(self, inputs_embeds, **kw):
        rows, capacity = kw["cache"].rows or inputs_embeds.shape[0], kw["cache"].capacity
        self.calls.append(("denoise_kv", self._copy(inputs_embeds), {**kw, "cache": (rows, capacity)}))
        return self._forward(self.model.denoise_kv, inputs_embeds, kw)


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched inside the recorder's forwards and outside them (the decode step)."""

    def __init__(self, recorder: Recorder):
        super().__init__()
        self.recorder, self.inside, self.outside = recorder, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.recorder.depth:
            self.inside += 1
        elif not self.recorder.copying:
            self.outside += 1
        return func(*args, **(kwargs or {}))


def bare_loop(model, calls, caches):
    for kind, x, kw in calls:
        if kind == "denoise":
            model.denoise(x, **kw)
        else:
            model.denoise_kv(x, **{**kw, "cache": caches[kw["cache"]]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--cache", default="auto")
    parser.add_argument("--strategy", default="spd")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    C.add_precision_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = C.model(dtype=args.dtype, hidden_size=args.hidden, num_layers=args.layers)
    prompts = C.prompts(args.batch, args.prompt_len, vary=3)
    config = DecodeConfig(block_size=args.block, max_new_tokens=args.new, cache=args.cache)

    def decode():
        return generate(model, prompts, make_manager(args.strategy), config)

    recorder = Recorder(model)
    with OpCounter(recorder) as ops:
        generate(recorder, prompts, make_manager(args.strategy), config, runner=make_runner(recorder, args.cache))
    calls = recorder.calls
    caches = {}
    with torch.no_grad():
        for kind, x, kw in calls:  # allocate the caches of every (rows, capacity) outside the timing
            if kind == "denoise_kv" and kw["cache"] not in caches:
                caches[kw["cache"]] = KVCache(kw["cache"][1])
                model.denoise_kv(torch.zeros_like(x[:1]).expand(kw["cache"][0], -1, -1),
                                 **{**kw, "position_ids": kw["position_ids"][:1].expand(kw["cache"][0], -1),
                                    "attn_mask": kw["attn_mask"][:1].expand(kw["cache"][0], -1, -1, -1),
                                    "cache": caches[kw["cache"]]})
        decode()  # warm-up
        loop_t, bare_t = [], []
        for _ in range(args.repeats):  # interleaved, so load drifts hit both alike
            loop_t.append(C.timed(decode)[1])
            bare_t.append(C.timed(lambda: bare_loop(model, calls, caches))[1])
    n = len(calls)
    loop_fps, bare_fps = n / statistics.median(loop_t), n / statistics.median(bare_t)
    paired = statistics.median(b / a for a, b in zip(loop_t, bare_t))
    print(f"device: {C.machine()}; {C.params(model)}, {model.embedding_table().dtype}; {args.strategy}, batch "
          f"{args.batch}, prompt {args.prompt_len}, new {args.new}, block {args.block}, cache {args.cache}: {n} forwards")
    print(f"tensor ops per step: {ops.outside / n:.0f} in the decode step, {ops.inside / n:.0f} in the forward "
          f"(launch-bound estimate of the ratio: {ops.inside / (ops.inside + ops.outside):.2f})")
    print(f"decode loop {loop_fps:.0f} forwards/s, bare forward loop {bare_fps:.0f} forwards/s -> ratio "
          f"{loop_fps / bare_fps:.3f} (paired median {paired:.3f}; target >= 0.9)")


if __name__ == "__main__":
    main()
