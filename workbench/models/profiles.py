"""Per-family facts the adapters need to drive a checkpoint: special ids, attention layout, forward call.

A profile is matched on `config.model_type` (or, failing that, `config.architectures`) of a checkpoint
folder. Each fact below was checked against the family's public reference code; the source is named on
the profile, and every fact we could not check is said so in `notes`.

How the forward is called (`attention`):
- "padding_2d": `attention_mask` (N, L) long, 1 = real token. Bidirectional models only.
- "bool_4d":    (N, 1, L, L) bool, True = query may attend key (Dream's generate builds this).
- "additive_4d": (N, 1, L, L) in the model dtype, 0 = may attend, -inf = blocked; LLaDA-2.0's own generate
  passes `block_mask.log()`, i.e. exactly this. Padding queries attend to themselves (see masks.py), so no
  softmax row is all -inf.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

AttentionLayout = Literal["padding_2d", "bool_4d", "additive_4d"]

# Special token ids of the public checkpoints (named constants, never bare numbers in the adapters).
LLADA_MASK_ID = 126336  # LLaDA GUIDELINES.md: "LLaDA designates a reserved token as the mask token (126336)"
LLADA_EOS_ID = 126081  # <|endoftext|>; LLaDA pads SFT answers with it (config eos/pad); 126348 is <|eot_id|>
LLADA2_MASK_ID = 156895  # LLaDA2MoeModelLM.generate(mask_id=156895); dInfer's LLaDA-2 decoder uses the same
LLADA2_EOS_ID = 156892  # LLaDA2MoeModelLM.generate(eos_id=156892)
DREAM_MASK_ID = 151666  # DreamConfig(mask_token_id=151666); read from the config first, this is the fallback


@attrs.frozen(kw_only=True)
class ModelProfile:
    """How to drive one model family through the `Denoiser` protocol.

    mask_id / eos_id: None means "read from config.json (`mask_token_id` / `eos_token_id`), then from the
    tokenizer". block_causal: a query in block b sees keys in blocks <= b (needs a 4-D mask).
    kv_cache: the forward takes `past_key_values` usable for an exact prefix cache (informational: the
    workbench cache decides whether to use it). inputs_embeds: the family's forward accepts soft input
    embeddings (checked again against the real forward signature at load time). position_kwarg: the
    forward's position-id argument, None when it has none. position_offset: added to the position ids
    (RoBERTa counts from padding_idx + 1). logits_shift: logits at i predict token i + 1 (AR-initialised
    Dream); the adapter shifts them right by one so that logits[i] scores position i. forward_kwargs:
    constant keyword arguments, passed only when the forward accepts them. chat_template: instruct
    checkpoints expect prompts rendered with the tokenizer's chat template (`--chat-template auto`). auto_class:
    the transformers auto class to load with when config.json's `auto_map` does not name the model class.
    honours_padding: the family's published forward masks left padding out of attention (True), ignores its
    attention mask (False: the adapter then forwards each prompt length of a batch on its own, without
    padding, so a row decodes as it does alone), or is unknown (None: probed when the model loads).
    own_from_pretrained: the model class's own `from_pretrained` (an override in the remote code) runs; False
    loads with transformers' `PreTrainedModel.from_pretrained` instead, for a family whose override only
    attaches something the workbench never reads and cannot run here (Dream's, `models/remote_compat.py`).
    """

    name: str
    model_types: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    mask_id: int | None = None
    eos_id: int | None = None
    block_causal: bool = False
    kv_cache: bool = False
    inputs_embeds: bool = True
    attention: AttentionLayout = "padding_2d"
    attention_kwarg: str = "attention_mask"
    position_kwarg: str | None = "position_ids"
    position_offset: int = 0
    logits_shift: bool = False
    forward_kwargs: tuple[tuple[str, Any], ...] = (("use_cache", False), ("return_dict", True))
    chat_template: bool = False
    auto_class: str = "AutoModelForCausalLM"
    honours_padding: bool | None = True
    own_from_pretrained: bool = True
    source: str = ""
    notes: str = ""

    def __attrs_post_init__(self) -> None:
        if self.block_causal and self.attention == "padding_2d":
            raise ValueError(f"profile {self.name}: a block-causal model needs a 4-D attention layout")


LLADA = ModelProfile(
    name="llada",
    model_types=("llada",),
    architectures=("LLaDAModelLM",),
    mask_id=LLADA_MASK_ID,
    eos_id=LLADA_EOS_ID,
    block_causal=False,
    kv_cache=False,  # the original modelling file refuses a KV cache ("not supported for MDM")
    attention="padding_2d",
    position_kwarg=None,  # LLaDAModelLM.forward has no position ids
    chat_template=True,
    auto_class="AutoModel",
    # LLaDALlamaBlock.attention calls scaled_dot_product_attention with attn_mask=None whatever the caller
    # passes ("MDM set causal to False, and with no attn_mask"), so padding tokens are attended to.
    honours_padding=False,
    source="github.com/ML-GSAI/LLaDA (GUIDELINES.md, modeling_llada.py); Fast-dLLM's copy of modeling_llada.py",
    notes="Checkpoints whose weights map onto the native model (llama blocks, RMSNorm, RoPE, SiLU, no biases, "
          "no GQA: LLaDA-8B) load into it (workbench/models/conversion.py), with every cache mode; the rest run "
          "this profile's remote code. Mask/EOS ids: config.json's mask_token_id / eos_token_id first, these "
          "constants only where the config has none. The attention ignores its mask, so batches are forwarded "
          "one prompt length at a time. Fast-dLLM's modified modelling file adds a KV cache.",
)

DREAM = ModelProfile(
    name="dream",
    model_types=("Dream", "dream"),
    architectures=("DreamModel",),
    mask_id=None,  # DreamConfig.mask_token_id (151666 in the released checkpoints)
    eos_id=None,  # config.eos_token_id (151643, <|endoftext|>)
    block_causal=False,
    kv_cache=False,  # DreamConfig: use_cache=False, "cache not used in diffusion"
    attention="bool_4d",
    logits_shift=True,  # generation_utils: logits = cat([logits[:, :1], logits[:, :-1]], dim=1)
    chat_template=True,
    auto_class="AutoModel",
    # DreamPreTrainedModel.from_pretrained sets a DreamGenerationConfig on what transformers returned: a tuple
    # with output_loading_info=True, and under transformers 5 that config's validate() refuses its arguments.
    own_from_pretrained=False,
    source="Dream's model folder files (Dream-org/Dream-v0-*-7B: configuration_dream.py, modeling_dream.py, "
           "generation_utils.py), as NVlabs/Fast-dLLM ships them in dream/model/; github.com/DreamLM/Dream",
    notes="Initialised from Qwen2.5 (autoregressive), so logits are shifted right by one; the first "
          "position's logits are a copy and are meaningless (the prompt's first token is never masked). "
          "The published files load unmodified through workbench/models/remote_compat.py (RoPE 'default' "
          "entry for transformers 5; the from_pretrained override skipped).",
)

LLADA2 = ModelProfile(
    name="llada2",
    model_types=("llada2_moe",),
    architectures=("LLaDA2MoeModelLM",),
    mask_id=LLADA2_MASK_ID,
    eos_id=LLADA2_EOS_ID,
    block_causal=True,
    kv_cache=True,  # forward takes past_key_values (DynamicCache)
    attention="additive_4d",
    chat_template=True,
    auto_class="AutoModelForCausalLM",
    source="inclusionAI/LLaDA2.0 modeling_llada2_moe.py (generate defaults), dInfer LLaDA-2 example",
    notes="DMax checkpoints are LLaDA-2.0-mini fine-tunes and are expected to keep model_type "
          "llada2_moe (not verified against a released DMax config). Whether a 4-D mask is passed to "
          "attention as is depends on the transformers version the remote code was written for.",
)

GENERIC_REMOTE = ModelProfile(
    name="generic-remote",
    attention="bool_4d",
    honours_padding=None,
    source="fallback for unknown remote-code models",
    notes="mask/eos ids from config.json or the tokenizer; block_causal from config.block_causal if set; "
          "position ids only when the forward takes `position_ids`.",
)

MASKED_LM = ModelProfile(
    name="masked-lm",
    attention="padding_2d",
    forward_kwargs=(("return_dict", True),),
    auto_class="AutoModelForMaskedLM",
    source="transformers built-in masked LMs (BERT, RoBERTa, DistilBERT, ModernBERT...)",
)

PROFILES: tuple[ModelProfile, ...] = (LLADA, DREAM, LLADA2)


def match_profile(model_type: str | None, architectures: list[str] | tuple[str, ...] | None) -> ModelProfile | None:
    """The known profile of a remote-code checkpoint, or None (then the caller uses GENERIC_REMOTE)."""
    for profile in PROFILES:
        if model_type is not None and model_type in profile.model_types:
            return profile
    for profile in PROFILES:
        if any(arch in profile.architectures for arch in architectures or ()):
            return profile
    return None
