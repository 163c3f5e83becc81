"""What a training run is asked to do: `TrainConfig` and the named presets of `workbench train --preset`.

Plain attrs with no torch, so the command line builds its options from these fields without importing the
training loop (`workbench.training.train`).
"""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class TrainConfig:
    trainer: str = "mdlm"
    # The objective's own hyperparameters (e.g. OPUT's mask_ratio), `workbench train --set name=value`.
    trainer_params: dict = attrs.field(factory=dict)
    task: str = "choice"
    steps: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    batch_size: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    lr: float = attrs.field(default=1e-3, validator=attrs.validators.gt(0))
    weight_decay: float = 0.01
    warmup: float = attrs.field(default=0.03, validator=[attrs.validators.ge(0), attrs.validators.lt(1)])
    clip: float = 1.0
    seed: int = 0
    block_size: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    checkpoint_every: int = 200
    # Model shape, used only when training from scratch (no --init).
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    block_causal: bool = True
    # Optional: self-distilled data (the base model's own generations), a JSONL of prompt/answer.
    data: str | None = None
    # Evaluation examples for the model card's table (0 = no evaluation).
    eval_limit: int = attrs.field(default=200, validator=attrs.validators.ge(0))
    # Execution (same update, other memory/speed); may change when a run resumes. `accumulate`: each
    # rank's share of the batch runs as this many micro-batches; `bf16`: CUDA bfloat16 autocast.
    accumulate: int = attrs.field(default=1, validator=attrs.validators.gt(0))
    bf16: bool = False
    # Shard parameters, gradients and optimizer state over ranks (FSDP2 `fully_shard`), for models that do
    # not fit one device; must stay the same on resume (the checkpoint is the same full state either way).
    fsdp: bool = False


# TrainConfig fields a resumed run may change: they change how a step is computed, not which step.
EXECUTION_FIELDS = ("accumulate", "bf16")


# Presets: `micro` exercises every trainer for real on a CPU in seconds (tests); `base` and `post` are the
# shipped default lab's recipe (see the model card).
PRESETS: dict[str, dict] = {
    "micro": dict(steps=30, batch_size=16, lr=2e-3, hidden_size=32, num_layers=2, num_heads=2, checkpoint_every=10,
                  eval_limit=4),
    # The shipped lab (lab/recipe.sh): three mdlm stages for the base model, then each post-training.
    "sum-scratch": dict(task="sum", steps=3000, batch_size=64, lr=1e-3, block_size=8),
    "sum-continue": dict(task="sum", steps=5000, batch_size=64, lr=1.5e-3, warmup=0.02, seed=1, block_size=8),
    "base": dict(task="choice", steps=2000, batch_size=64, lr=1e-3, warmup=0.02, seed=1, block_size=8),
    "post": dict(task="choice", steps=1000, batch_size=64, lr=3e-4, seed=2, block_size=8),
    # The second task `spans` (block 32): the choice base continued with mdlm, then the same post-training.
    "spans-base": dict(task="spans", steps=2000, batch_size=64, lr=1e-3, warmup=0.02, seed=1, block_size=32),
    "spans-post": dict(task="spans", steps=1000, batch_size=64, lr=3e-4, seed=2, block_size=32),
}
