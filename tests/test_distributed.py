"""torchrun (two CPU processes, gloo) against the one-process run: training, resume with another N, evaluation.

The contract: `--batch-size` is the global batch, so an N-process run takes the one-process steps up to
float rounding; a checkpoint resumes with any N; a sharded evaluation stores the same per-sample results.
The two-process jobs are real `torchrun --standalone` launches of `python -m workbench` (a free port each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import torch
from safetensors.torch import load_file

from workbench.cli import build_parser
from workbench.cli import main as cli_main
from workbench.commands.train import config_from_args
from workbench.runtime.distributed import rank_rows, round_robin
from workbench.results.store import ResultsStore
from workbench.training.train import CHECKPOINT, TrainConfig, _resumable, train

# Tiny on purpose (a 2-core machine shares these tests with other jobs). OPUT is the demanding objective:
# its corruption runs a forward with the current weights, so ranks must agree on weights and noise.
CONFIG = TrainConfig(trainer="oput", steps=4, batch_size=8, lr=2e-3, hidden_size=32, num_layers=2, num_heads=2,
                     checkpoint_every=10, eval_limit=0)
FLAGS = ["--trainer", "oput", "--preset", "micro", "--steps", "4", "--batch-size", "8", "--checkpoint-every", "10",
         "--eval-limit", "0", "--quiet"]
ATOL = 1e-5


def torchrun(*args: str, cwd: Path) -> str:
    """`torchrun --standalone --nproc_per_node 2 -m workbench ARGS` (free port); returns its output."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "workbench", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def history(folder: Path) -> list[float]:
    return json.loads((folder / "training.json").read_text())["loss_history"]


def assert_same_model(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=ATOL, rtol=0, msg=name)
    assert history(a) == pytest.approx(history(b), rel=ATOL)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted one-process run every multi-process run is compared to."""
    return train(CONFIG, tmp_path_factory.mktemp("one") / "model", progress=False)


# --- pieces ------------------------------------------------------------------------------------------------


def test_rank_rows_split_the_global_batch_evenly():
    rows = [rank_rows(8, 2, r, accumulate=2) for r in range(2)]
    assert rows == [[slice(0, 2), slice(2, 4)], [slice(4, 6), slice(6, 8)]]
    with pytest.raises(ValueError, match="--batch-size 10 is the global batch"):
        rank_rows(10, 4, 0)


def test_round_robin_gives_every_rank_the_same_number_of_rounds():
    batches = [[0], [1], [2]]
    assert list(round_robin(batches, 0, 2)) == [[0], [2]]
    assert list(round_robin(batches, 1, 2)) == [[1], []]


def test_accumulation_takes_the_same_step(reference, tmp_path):
    out = train(attrs.evolve(CONFIG, accumulate=2), tmp_path / "acc", progress=False)
    assert_same_model(reference, out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for CPU-only machines")
def test_bf16_on_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--bf16 .* no CUDA device"):
        train(attrs.evolve(CONFIG, bf16=True), tmp_path / "m", progress=False)


def test_fsdp_needs_torchrun(tmp_path):
    with pytest.raises(ValueError, match="--fsdp shards the model over the processes"):
        train(attrs.evolve(CONFIG, fsdp=True), tmp_path / "m", progress=False)


def test_flags_and_older_checkpoints():
    args = build_parser().parse_args(["train", "--out", "x", "--bf16", "--accumulate", "4", "--block-causal", "false"])
    cfg = config_from_args(args)
    assert (cfg.bf16, cfg.accumulate, cfg.block_causal, cfg.fsdp) == (True, 4, False, False)
    saved = attrs.asdict(CONFIG)
    older = {k: v for k, v in saved.items() if k not in ("accumulate", "bf16", "fsdp")}  # before those fields
    assert _resumable(older, CONFIG) and _resumable(saved, attrs.evolve(CONFIG, accumulate=2))
    assert not _resumable(saved, attrs.evolve(CONFIG, lr=1e-3)) and not _resumable(saved, attrs.evolve(CONFIG, fsdp=True))


# --- torchrun ----------------------------------------------------------------------------------------------


def test_two_processes_train_like_one(reference, tmp_path):
    # Micro-batches too: DDP's no_sync on the first micro-step of each rank.
    torchrun("train", *FLAGS, "--accumulate", "2", "--out", str(tmp_path / "two"), cwd=tmp_path)
    assert_same_model(reference, tmp_path / "two")


def test_resume_with_another_process_count(reference, tmp_path):
    out = tmp_path / "resumed"
    stdout = torchrun("train", *FLAGS, "--stop-after", "2", "--out", str(out), cwd=tmp_path)
    assert "stopped after step 2" in stdout
    assert torch.load(out / CHECKPOINT, weights_only=False)["step"] == 2
    assert not (out / "model.safetensors").exists()
    train(CONFIG, out, progress=False)  # one process continues the same global data stream
    assert_same_model(reference, out)


def test_fsdp_trains_like_one_process(reference, tmp_path):
    # FSDP2 on CPU/gloo, with a checkpoint mid-run (a collective) and micro-batches.
    torchrun("train", *FLAGS, "--fsdp", "--accumulate", "2", "--checkpoint-every", "2",
             "--out", str(tmp_path / "fsdp"), cwd=tmp_path)
    assert_same_model(reference, tmp_path / "fsdp")


def test_two_process_run_stores_the_one_process_samples(reference, tmp_path, capsys):
    # Temperature > 0: sampling noise depends on the batch, which the round-robin deal keeps intact.
    common = ["run", "--model", str(reference), "--limit", "7", "--batch-size", "2", "--temperature", "0.5",
              "--json"]
    assert cli_main([*common, "--store", str(tmp_path / "one.db")]) == 0
    one_out = json.loads(capsys.readouterr().out)
    stdout = torchrun(*common, "--store", str(tmp_path / "two.db"), cwd=tmp_path)
    assert len(stdout.strip().splitlines()) == 1  # only rank 0 prints
    two_out = json.loads(stdout)
    for field in ("n", "accuracy", "tpf", "nfe", "tokens"):
        assert one_out[field] == two_out[field]
    with ResultsStore(tmp_path / "one.db") as a, ResultsStore(tmp_path / "two.db") as b:
        (run_a,), (run_b,) = a.runs(), b.runs()
        assert (run_a.key, run_a.config, run_a.n_samples, run_a.is_complete) == \
            (run_b.key, run_b.config, 7, True)
        untimed = lambda store: [attrs.evolve(s, seconds=0.0) for s in store.samples(run_a.key)]  # noqa: E731
        assert untimed(a) == untimed(b)
