"""Remote modelling code written for transformers 4.4x, loaded as downloaded under the installed transformers.

Dream's published files (`modeling_dream.py` of its model folder, and the copy NVlabs/Fast-dLLM ships) meet
three things they were not written for; the adapters load the folder unmodified by working around each here,
never by editing the folder's files:

1. `DreamRotaryEmbedding.__init__` looks up `ROPE_INIT_FUNCTIONS["default"]`, an entry transformers 5 removed
   (`KeyError: 'default'`; its models compute the default inverse frequencies themselves).
   `restore_default_rope(module)` gives that module, and only it, a copy of the table with "default" put back
   (transformers' own table is left alone). Any Qwen2- or Llama-derived file of that era needs it.
2. Dream overrides `from_pretrained` to attach its `DreamGenerationConfig`: it sets `generation_config` on
   whatever transformers' `from_pretrained` returned, a `(model, loading_info)` tuple when the loader asks for
   the loading report (`from_pretrained_strict` always does), and
3. under transformers 5 that config cannot even be built: `GenerationConfig.update` calls
   `validate(user_set_attributes=...)`, which Dream's `validate(self, is_init=False)` refuses (TypeError).
   `plain_from_pretrained(cls)` binds transformers' own `PreTrainedModel.from_pretrained` to the class, so the
   override does not run; the workbench never reads a generation config from the model (Dream's
   `diffusion_generate` builds its own too). Profile-gated (`ModelProfile.own_from_pretrained`): another
   family's override may do real work.
4. RoPE's inverse frequencies are a non-persistent buffer computed in `__init__`. transformers 5 builds the
   model on the meta device and materialises such buffers with `torch.empty`, relying on `_init_weights` to
   fill them; Dream's `_init_weights` only handles Linear and Embedding, so the model loads without an error
   and runs with uninitialised RoPE frequencies (different garbage each load). `restore_rotary_buffers` recomputes
   them the way the module's own `__init__` does (`rope_init_fn(config, ...)`, on the CPU, float32), after
   loading and after every `.to()` (a cast to bfloat16 would otherwise round them; Dream loaded with
   `torch_dtype=bfloat16` keeps them in float32). Other non-persistent buffers of remote code are named in a
   warning under transformers 5 (`unrestored_buffers`).
"""

from __future__ import annotations

from types import ModuleType

import torch
import transformers

DEFAULT_ROPE = "default"


def default_rope_parameters(config, device=None, seq_len=None, **rope_kwargs) -> tuple[torch.Tensor, float]:
    """transformers 4's `_compute_default_rope_parameters`: RoPE's inverse frequencies base^(-2i / dim) over the
    head's rotary dims, and attention scaling 1.0, in the same arithmetic (an int64 arange cast to float)."""
    base = rope_kwargs.get("base", getattr(config, "rope_theta", None))
    head_dim = rope_kwargs.get("dim") or getattr(config, "head_dim", None) or (
        config.hidden_size // config.num_attention_heads)
    dim = int(head_dim * getattr(config, "partial_rotary_factor", 1.0))
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float().to(device) / dim
    return 1.0 / (base ** exponents), 1.0


def restore_default_rope(module: ModuleType) -> bool:
    """Give a remote modelling module whose `ROPE_INIT_FUNCTIONS` lacks "default" its own copy with it (see
    the module docstring); True when it was needed. Idempotent; transformers' table is not modified."""
    table = getattr(module, "ROPE_INIT_FUNCTIONS", None)
    if table is None or DEFAULT_ROPE in table:
        return False
    module.ROPE_INIT_FUNCTIONS = {**table, DEFAULT_ROPE: default_rope_parameters}
    return True


def restore_rotary_buffers(model: torch.nn.Module) -> list[str]:
    """Recompute `inv_freq` of every rotary module written in transformers 4.4x style (a non-persistent
    `inv_freq` buffer, `rope_init_fn`, `config`, optional `rope_kwargs`) as its `__init__` does: on the CPU,
    in float32, then moved to the buffer's device; also `attention_scaling` and `original_inv_freq`. Returns
    the names of the modules restored (see the module docstring, 4)."""
    restored = []
    for name, module in model.named_modules():
        init = getattr(module, "rope_init_fn", None)
        if "inv_freq" not in getattr(module, "_non_persistent_buffers_set", ()) or not callable(init) \
                or getattr(module, "config", None) is None:
            continue
        inv_freq, scaling = init(module.config, None, **getattr(module, "rope_kwargs", {}))
        module.register_buffer("inv_freq", inv_freq.float().to(module.inv_freq.device), persistent=False)
        module.attention_scaling = scaling
        if hasattr(module, "original_inv_freq"):
            module.original_inv_freq = module.inv_freq
        restored.append(name)
    return restored


def unrestored_buffers(model: torch.nn.Module, restored: list[str]) -> list[str]:
    """Non-persistent buffers transformers 5 left to the remote code's `_init_weights` and
    `restore_rotary_buffers` did not recompute (empty when transformers < 5 built the model in full)."""
    if int(transformers.__version__.split(".")[0]) < 5:
        return []
    done = set(restored)
    return [f"{name}.{buffer}" if name else buffer for name, module in model.named_modules() if name not in done
            for buffer in sorted(getattr(module, "_non_persistent_buffers_set", ()))]


def plain_from_pretrained(namespace: dict) -> dict:
    """`namespace` (of the subclass the adapters build) with transformers' own `from_pretrained`, so that a
    remote class's override is skipped (Dream's, see the module docstring)."""
    return {**namespace, "from_pretrained": classmethod(transformers.PreTrainedModel.from_pretrained.__func__)}
