"""Shared set-up of the speed benchmarks: device, the default-size model, prompts, timing."""

from __future__ import annotations

import time

import torch

from workbench.models.native import build_random_model
from workbench.runtime.placement import DTYPES, place, resolve

# The shipped default model's size (vocab 90, hidden 128, 4 layers, 4 heads).
DEFAULT_SIZE = dict(hidden_size=128, num_layers=4, num_heads=4)
VOCAB = 90

# Fast-dLLM's threshold rule (tau 0.9, its default; margin 0: conf >= tau and the best one). dInfer's margin
# would commit every position within 1e-5 of the best, and a random model's near-uniform confidences all are:
# every block would take one forward and there would be nothing for a cache to save.
FAST_DLLM = {"tau": 0.9, "margin": 0.0}


def add_precision_argument(parser) -> None:
    parser.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                        help="weights: auto = bfloat16 on CUDA (with TF32), float32 on the CPU, as `workbench run`")


def model(*, block_causal: bool = True, dtype: str = "auto", **size):
    """A random native model placed as `workbench run` places one (`workbench.runtime.placement`: the GPU when
    present; `dtype` auto = bfloat16 with TF32 there, float32 on the CPU). Default size unless `size` says
    otherwise; wider models get 64-wide heads (GPT-2 small's: hidden 768, 12 layers, 12 heads is the
    ~100M-parameter model of the GPU targets)."""
    size = {**DEFAULT_SIZE, **size}
    if size["hidden_size"] > DEFAULT_SIZE["hidden_size"]:
        size["num_heads"] = size["hidden_size"] // 64
    return place(build_random_model(VOCAB, seed=0, block_causal=block_causal, **size), resolve("auto", dtype))


def params(m) -> str:
    """Parameter count in millions, for the printed set-up line."""
    return f"{sum(p.numel() for p in m.parameters()) / 1e6:.1f}M params"


def prompts(count: int, length: int, *, vary: int = 0) -> list[list[int]]:
    """`count` prompts of token ids 4..83; lengths length - i % (vary + 1) when `vary` > 0."""
    return [[4 + (7 * i + 3 * j) % 80 for j in range(length - (i % (vary + 1) if vary else 0))]
            for i in range(count)]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    """(result, seconds) of fn(), synchronised on CUDA."""
    sync()
    t0 = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t0


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    import platform
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} thread(s), torch {torch.__version__}"
