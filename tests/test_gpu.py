"""Decoding on a CUDA device: the same tokens as the CPU in float32, and a working bfloat16 path.

Skipped where torch sees no CUDA device (CI has none); run on a lent GPU with
`python -m pytest -q tests/test_gpu.py`.
"""

from __future__ import annotations

import pytest
import torch

from workbench.decoding.loop import generate
from workbench.models.native import build_random_model
from workbench.runtime.placement import Placement, place
from workbench.decoding.registry import make_manager
from workbench.decoding.state import DecodeConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

STRATEGIES = ("threshold", "hierarchical", "hard", "spd")
PROMPTS = [[4 + (5 * i + j) % 60 for j in range(n)] for i, n in enumerate((9, 14, 5, 12))]


def model(block_causal: bool):
    # float64 on both sides keeps near-tied argmaxes from flipping between CPU and GPU kernels
    return build_random_model(70, seed=3, hidden_size=64, num_layers=2, num_heads=4, block_causal=block_causal,
                              dtype=torch.float64)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("block_causal, cache", [(True, "auto"), (True, "none"), (False, "dual")])
def test_cuda_decodes_the_cpu_tokens(strategy, block_causal, cache):
    config = DecodeConfig(block_size=4, max_new_tokens=16, cache=cache)
    cpu = model(block_causal)
    gpu = model(block_causal).to("cuda")
    expected = generate(cpu, PROMPTS, make_manager(strategy), config)
    got = generate(gpu, PROMPTS, make_manager(strategy), config)
    assert [r.ids for r in got] == [r.ids for r in expected]
    assert [r.nfe for r in got] == [r.nfe for r in expected]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_bfloat16_on_cuda_decodes(strategy):
    gpu = place(model(True), Placement("cuda", "bfloat16"))
    assert gpu.embedding_table().dtype == torch.bfloat16 and torch.backends.cuda.matmul.allow_tf32
    results = generate(gpu, PROMPTS, make_manager(strategy), DecodeConfig(block_size=4, max_new_tokens=16))
    assert all(r.nfe > 0 and len(r.ids) > 0 for r in results)
