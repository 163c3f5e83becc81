"""Where and in what precision a model decodes: its device, its weight dtype, and TF32 matmuls.

`auto` (the default of `--device` / `--dtype`): the process's GPU when CUDA is available (under torchrun
the one LOCAL_RANK names), with bfloat16 weights and TF32 matmuls, else the CPU with float32 weights.
Confidences are computed by a float32 softmax whatever the weights (`workbench.decoding.loop.predict`), and SPD
mixes its embeddings in float32 (`plugins.embedders.hybrid`).

The placement is part of a run's identity (`RunSpec.precision`): bfloat16 logits may flip a near-tied
argmax, so samples decoded in different precisions are stored as different runs, never mixed.
"""

from __future__ import annotations

import attrs

DEVICES = ("auto", "cpu", "cuda")
# Names of torch dtypes (torch is imported only to place a model: `--help` lists these without it).
# float64 for exactness checks (cached vs uncached, batch invariance), where no near-tie may flip an argmax.
DTYPES = ("float32", "bfloat16", "float64")


@attrs.frozen
class Placement:
    """A resolved device type (`cpu` or `cuda`) and weight dtype name (a key of `DTYPES`)."""

    device: str
    dtype: str

    @property
    def label(self) -> str:
        """`cuda/bfloat16`, `cpu/float32`: what run keys and reports record."""
        return f"{self.device}/{self.dtype}"


def resolve(device: str = "auto", dtype: str = "auto") -> Placement:
    """The placement `--device` / `--dtype` ask for; ValueError naming the fix for an impossible one."""
    if device not in DEVICES:
        raise ValueError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if dtype != "auto" and dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: choose auto or one of {', '.join(DTYPES)}")
    import torch

    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise ValueError("--device cuda: no CUDA device is visible to torch (torch.cuda.is_available() is False); "
                         "use --device cpu, or install a CUDA build of torch")
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device == "cuda" else "float32"
    return Placement(device, dtype)


def place(model, placement: Placement):
    """The model moved to the placement's device and dtype (TF32 matmuls switched on for CUDA)."""
    import torch

    from workbench.runtime.distributed import local_device

    if placement.device == "cuda":
        # TF32 speeds up float32 matmuls (--dtype float32 on a GPU) by rounding their inputs to a 10-bit
        # mantissa, still finer than bfloat16's 7; bfloat16 weights do not use it.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        target = local_device()
    else:
        target = torch.device("cpu")
    return model.to(device=target, dtype=getattr(torch, placement.dtype))
