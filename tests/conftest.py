"""Shared fixtures: tiny models and hypothesis profiles sized for a 2-core CI machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from workbench.models.native import build_random_model

# Deadlines off: a decode's time depends on the machine's load (a training job may share it).
settings.register_profile("ci", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Tiny models are latency-bound: with intra-op threads on a shared 2-core machine a 2-layer forward
# takes ~100x longer (thread hand-off under contention) than on one thread.
torch.set_num_threads(1)

# Golden transcripts (`tests/reference/`): strategy tests import `transcripts` (cases, check_case).
sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))

TINY = dict(hidden_size=32, num_layers=2, num_heads=2)


@pytest.fixture(scope="session")
def tiny_model():
    """Block-causal float32 native model (vocab 24)."""
    return build_random_model(24, seed=0, **TINY, block_causal=True)


@pytest.fixture(scope="session", params=[True, False], ids=["block_causal", "bidirectional"])
def tiny_model64(request):
    """Float64 native models, both attention layouts: exact batch-invariance comparisons."""
    return build_random_model(24, seed=1, dtype=torch.float64, **TINY, block_causal=request.param)
