"""Checkpoints of other dLLM architectures whose weights map exactly onto the native model.

LLaDA (its published `modeling_llada.py`, an OLMo-style "llama" block) computes what the native model computes:
RMSNorm (normalised in float32), rotary embeddings on q and k (rotate-half layout), SiLU-gated MLP, no biases,
a bidirectional attention with the default 1/sqrt(d) scale, an untied or tied output head. A folder whose
config stays inside that family (`llada_mapping` says why not otherwise) is loaded into `NativeDenoiser`, with
its tensors renamed and stacked, instead of running the folder's Python code. The native model then brings
what the remote code cannot: the prefix and dual caches, the faster loop, masking of left padding (the
published attention ignores its mask), and `workbench train --init`.

Called by `workbench.models.adapters.load_adapter` (hence `load_model`) and `workbench.training.train.build_model`.
Dream (Qwen2 blocks: q/k/v biases, grouped-query attention, logits shifted by one) does not map onto the native
model and keeps the remote-code path.

Tensor names (LLaDA -> native), `model.transformer.` prefix dropped:
    wte.weight -> embed.weight; ln_f.weight -> norm.weight; ff_out.weight (or wte.weight when tied) -> lm_head
    blocks.i.{attn_norm, ff_norm}.weight -> layers.i.{attn_norm, mlp_norm}.weight
    blocks.i.{q_proj, k_proj, v_proj}.weight stacked -> layers.i.attn.qkv.weight; attn_out -> attn.out
    blocks.i.{ff_proj, up_proj}.weight stacked -> layers.i.mlp.gate_up.weight; blocks.i.ff_out -> mlp.down
"""

from __future__ import annotations

from pathlib import Path

import torch

from workbench.models.native import NativeDenoiser, NativeDenoiserConfig

LLADA_PREFIX = "model.transformer."
DEFAULT_BLOCK = 32  # Fast-dLLM's and DMax's block length for LLaDA


def _get(raw: dict, name: str, default=None):
    value = raw.get(name, default)
    return default if value is None else value


def llada_mapping(raw: dict) -> list[str]:
    """What keeps a LLaDA config.json from mapping onto the native model; empty when it maps."""
    if raw.get("model_type") != "llada":
        return [f"model_type {raw.get('model_type')!r} is not 'llada'"]
    heads, d_model = _get(raw, "n_heads", 0), _get(raw, "d_model", 0)
    checks = [
        (_get(raw, "block_type", "llama") == "llama", f"block_type {raw.get('block_type')!r} (only 'llama')"),
        (_get(raw, "layer_norm_type", "rms") == "rms", f"layer_norm_type {raw.get('layer_norm_type')!r} (only 'rms')"),
        (_get(raw, "activation_type", "silu") == "silu",
         f"activation_type {raw.get('activation_type')!r} (only 'silu')"),
        (bool(raw.get("rope", True)) and not raw.get("alibi"), "positions other than RoPE"),
        (not raw.get("include_bias") and not raw.get("include_qkv_bias"), "linear biases"),
        (not raw.get("bias_for_layer_norm"), "layer-norm biases"),
        (_get(raw, "layer_norm_with_affine", True), "layer norms without weights"),
        (_get(raw, "n_kv_heads", heads) == heads and not raw.get("multi_query_attention"),
         "grouped-query attention (n_kv_heads != n_heads)"),
        (not raw.get("attention_layer_norm"), "query/key layer norms"),
        (not raw.get("input_emb_norm") and not raw.get("scale_logits"), "scaled embeddings or logits"),
        (raw.get("clip_qkv") is None, "clip_qkv"),
        (_get(raw, "block_group_size", 1) == 1, "block groups"),
        (heads > 0 and d_model % heads == 0, "d_model not divisible by n_heads"),
    ]
    return [why for ok, why in checks if not ok]


def native_config(raw: dict) -> NativeDenoiserConfig:
    """The native config computing what the LLaDA config computes (ids: `config.json`'s; see `load_llada`)."""
    d_model = raw["d_model"]
    hidden = _get(raw, "mlp_hidden_size") or _get(raw, "mlp_ratio", 4) * d_model
    return NativeDenoiserConfig(
        vocab_size=_get(raw, "embedding_size") or raw["vocab_size"], hidden_size=d_model, num_layers=raw["n_layers"],
        num_heads=raw["n_heads"], intermediate_size=hidden, rope_theta=float(_get(raw, "rope_theta", 10000.0)),
        rms_norm_eps=float(_get(raw, "rms_norm_eps", 1e-5)), block_causal=False, block_size=DEFAULT_BLOCK,
        mask_token_id=int(_get(raw, "mask_token_id", 0)), eos_token_id=int(_get(raw, "eos_token_id", 0)),
        pad_token_id=int(_get(raw, "pad_token_id", _get(raw, "eos_token_id", 0))),
    )


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the folder's weight files: *.safetensors (sharded or not), else pytorch_model*.bin
    (read with weights_only=True: tensors only, never code)."""
    from safetensors.torch import load_file

    tensors: dict[str, torch.Tensor] = {}
    files = sorted(folder.glob("*.safetensors"))
    for f in files:
        tensors.update(load_file(f))
    if not files:
        for f in sorted(folder.glob("pytorch_model*.bin")):
            tensors.update(torch.load(f, map_location="cpu", weights_only=True))
    return tensors


def llada_state_dict(raw: dict, tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
    """(the native state dict, LLaDA tensor names it did not use). KeyError names a tensor the file lacks."""
    used: set[str] = set()

    def take(name: str) -> torch.Tensor:
        key = LLADA_PREFIX + name
        if key not in tensors:
            raise KeyError(key)
        used.add(key)
        return tensors[key]

    out = {"embed.weight": take("wte.weight"), "norm.weight": take("ln_f.weight")}
    out["lm_head.weight"] = take("wte.weight") if raw.get("weight_tying") else take("ff_out.weight")
    for i in range(raw["n_layers"]):
        b, n = f"blocks.{i}.", f"layers.{i}."
        out[n + "attn_norm.weight"] = take(b + "attn_norm.weight")
        out[n + "mlp_norm.weight"] = take(b + "ff_norm.weight")
        out[n + "attn.qkv.weight"] = torch.cat([take(b + f"{p}_proj.weight") for p in "qkv"])
        out[n + "attn.out.weight"] = take(b + "attn_out.weight")
        out[n + "mlp.gate_up.weight"] = torch.cat([take(b + "ff_proj.weight"), take(b + "up_proj.weight")])
        out[n + "mlp.down.weight"] = take(b + "ff_out.weight")
    if raw.get("weight_tying"):  # tied: the head is the embedding table, not a copy that could drift in training
        out["lm_head.weight"] = out["lm_head.weight"].clone()
    return out, set(tensors) - used


class NotMappable(ValueError):
    """The folder's weights hold tensors the native mapping would leave unused: it computes something else."""


def load_llada(folder: str | Path, raw: dict, *, mask_id: int, eos_id: int, pad_id: int) -> NativeDenoiser:
    """The LLaDA checkpoint in `folder` as a NativeDenoiser (bidirectional, block 32), with the given special ids.

    WeightMismatchError naming the tensors when the file lacks one the config implies or has one of another
    shape; NotMappable naming them when it has tensors the mapping does not use (the caller then runs the
    folder's own code)."""
    from workbench.models.folders import check_loading_info

    folder = Path(folder)
    config = native_config(raw)
    config.mask_token_id, config.eos_token_id, config.pad_token_id = int(mask_id), int(eos_id), int(pad_id)
    tensors = read_tensors(folder)
    try:
        state, unused = llada_state_dict(raw, tensors)
    except KeyError as err:
        check_loading_info(folder, {"missing_keys": [err.args[0]]})
        raise
    with torch.device("meta"):  # no random init of a large model before its weights arrive
        model = NativeDenoiser(config)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    mismatched = [k for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k])]
    check_loading_info(folder, {"missing_keys": sorted(set(expected) - set(state)), "mismatched_keys": mismatched})
    if unused:
        raise NotMappable(f"{folder}: tensors the native model has no place for: {', '.join(sorted(unused)[:8])}")
    model.load_state_dict(state, strict=True, assign=True)
    model.config.converted_from = "llada"  # saved with the model by `workbench train --init`
    return model.eval()
