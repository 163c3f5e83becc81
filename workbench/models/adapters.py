"""Transformers checkpoints from a local folder as `Denoiser`s: built-in masked LMs and remote-code dLLMs.

`load_adapter(folder)` reads config.json without running any code, then:
- built-in architectures (no `auto_map`): `AutoModelForMaskedLM` (BERT, RoBERTa, DistilBERT, ModernBERT...),
  bidirectional, special ids from the tokenizer ([MASK]; [SEP] or EOS; [PAD]);
- remote-code checkpoints (`auto_map` in config.json): loaded only when the caller passes
  `trust_remote_code=True`. A LLaDA folder whose weights map onto the native model is loaded into it
  (`workbench.models.conversion`; `native=False` runs its own code instead); any other runs its modelling files
  in this process, driven as the family profile in profiles.py says (LLaDA, Dream, LLaDA-2.0 / DMax, else
  generic). Special ids come from config.json first, then the tokenizer, then the profile.
Nothing is fetched from a hub: every transformers call passes `local_files_only=True`.

Remote code written for transformers 4 loads as downloaded (`transformers4_compatible`, never by editing the
folder's files): a model class that never calls `post_init()` gets it called after its own `__init__` (transformers
5 reads `all_tied_weights_keys`, which `post_init` sets), and a `tie_weights()` without parameters is called
without the `missing_keys` / `recompute_mapping` arguments transformers 5 passes. Dream's files need two more
(`workbench.models.remote_compat`): the module's RoPE table gets back the "default" entry transformers 5
removed, and Dream's `from_pretrained` override, which cannot run with the loading report (nor at all under
transformers 5), is skipped (`ModelProfile.own_from_pretrained`). A package the code imports
that is not installed (LLaDA's file as Fast-dLLM ships it imports einops) is named with the extra that installs
it: `pip install 'dllm-workbench[llada]'`.

Padding: a family whose attention ignores its mask (LLaDA's published code) is forwarded one prompt length at a
time, each group without padding columns, so a row's logits do not depend on the other prompts of its batch
(`TransformersDenoiser.denoise`); NFE per row is unchanged, the cost is one forward per distinct prompt length.

A model whose forward takes no `inputs_embeds` cannot receive soft inputs (SPD's hybrid embeddings). With
`hard_token_only=True` it is wrapped in `HardTokenOnly`, which maps every input embedding back to the
token id whose embedding row it equals exactly, and refuses soft inputs with a clear error.
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import attrs
import torch
import transformers
from torch import nn

from workbench.models.folders import ModelLoadError, WeightMismatchError, from_pretrained_strict, require_trust
from workbench.models.masks import decode_attention_mask, position_ids_from_valid
from workbench.models.profiles import GENERIC_REMOTE, LLADA, MASKED_LM, ModelProfile, match_profile
from workbench.models.remote_compat import (plain_from_pretrained, restore_default_rope, restore_rotary_buffers,
                                            unrestored_buffers)

HARD_TOKEN_STRATEGIES = "threshold, hierarchical, hard"
_ROWS_PER_LOOKUP = 256  # rows of (rows, V) distance matrix per chunk in HardTokenOnly: bounded memory
# Packages the published modelling files of the supported families import, and the extra that installs them.
EXTRAS = {"einops": "llada"}


class AdapterError(ValueError):
    """A checkpoint folder the adapters cannot drive; the message names the folder and what to do."""


class TransformersDenoiser(nn.Module):
    """A transformers model behind the `Denoiser` protocol, called as its `ModelProfile` says.

    An `nn.Module`, so `.to()`, `.eval()`, `.parameters()` and `state_dict()` reach the wrapped model.
    """

    def __init__(self, model: nn.Module, profile: ModelProfile, *, mask_id: int, eos_id: int, pad_id: int,
                 folder: Path):
        super().__init__()
        self.model = model
        self.profile = profile
        self.mask_id, self.eos_id, self.pad_id = int(mask_id), int(eos_id), int(pad_id)
        self.block_causal = profile.block_causal
        self.folder = folder
        params = inspect.signature(model.forward).parameters
        self.accepts_inputs_embeds = profile.inputs_embeds and "inputs_embeds" in params
        self._positions = profile.position_kwarg if profile.position_kwarg in params else None
        # Constants go only to named parameters: a **kwargs sink may not know them.
        self._constants = {k: v for k, v in profile.forward_kwargs if k in params}
        self.honours_padding = profile.honours_padding
        self.rotary_restored = False  # set by the loader: RoPE buffers it recomputes after every .to()
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        weight = getattr(output, "weight", None)
        self.vocab_size = int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)
        rows = self.embedding_table().shape[0]
        for what, token in (("mask", self.mask_id), ("eos", self.eos_id), ("pad", self.pad_id)):
            if not 0 <= token < rows:
                raise AdapterError(f"{folder}: {what} id {token} is outside the embedding table ({rows} rows); "
                                   f"profile {profile.name!r} does not fit this checkpoint: fix the "
                                   f"tokenizer/config ids or add a profile in workbench/models/profiles.py")

    def _apply(self, fn, *args, **kwargs):
        """`.to()` / `.float()`... on the wrapped model, then the RoPE frequencies the loader restored recomputed
        in float32: a cast to bfloat16 would round them, where the published code keeps them in float32."""
        result = super()._apply(fn, *args, **kwargs)
        if getattr(self, "rotary_restored", False):
            restore_rotary_buffers(self.model)
        return result

    # -- Denoiser protocol --------------------------------------------------------------------------
    def embedding_table(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight  # (V, D), unscaled

    def mask_embedding(self) -> torch.Tensor:
        return self.embedding_table()[self.mask_id]  # (D,)

    def denoise(self, inputs_embeds: torch.Tensor, *, block_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.honours_padding is False and not bool(valid.all()):
            return self._by_prompt_length(inputs_embeds, block_ids, valid)
        return self._denoise(inputs_embeds, block_ids, valid)

    def _by_prompt_length(self, inputs_embeds, block_ids, valid) -> torch.Tensor:
        """For models whose attention ignores its mask: the rows grouped by their left padding, each group
        forwarded without its padding columns. A row computes what it computes alone; padding positions get
        zero logits (nothing reads them)."""
        pads = (~valid).sum(-1)  # (N,) left padding per row (the loop only left-pads)
        out = None
        for pad in pads.unique().tolist():
            rows = (pads == pad).nonzero().flatten()
            logits = self._denoise(inputs_embeds[rows, pad:], block_ids[rows, pad:], valid[rows, pad:])
            if out is None:
                out = logits.new_zeros(*inputs_embeds.shape[:2], logits.shape[-1])  # (N, L, V)
            out[rows, pad:] = logits
        return out

    def _denoise(self, inputs_embeds, block_ids, valid) -> torch.Tensor:
        kwargs = dict(self._constants)
        kwargs[self.profile.attention_kwarg] = self._attention(block_ids, valid, inputs_embeds.dtype)
        if self._positions is not None:
            # Skip left padding so that a padded row sees the same positions as alone.
            kwargs[self._positions] = position_ids_from_valid(valid) + self.profile.position_offset  # (N, L)
        logits = _logits_of(self._forward(inputs_embeds, kwargs))  # (N, L, V)
        if self.profile.logits_shift:
            # AR-initialised models (Dream): logits at i predict i + 1; realign so logits[i] scores i.
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        return logits

    # -- internals ------------------------------------------------------------------------------------
    def _attention(self, block_ids: torch.Tensor, valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        layout = self.profile.attention
        if layout == "padding_2d":  # bidirectional only (enforced by ModelProfile); block ids are moot
            return valid.long()  # (N, L)
        allowed = decode_attention_mask(block_ids, valid, self.block_causal)  # (N, 1, L, L) bool
        if layout == "bool_4d":
            return allowed
        # additive_4d, as LLaDA-2.0's generate builds it (block_mask.log()): 0 allowed, -inf blocked.
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, float("-inf"))

    def _forward(self, inputs_embeds: torch.Tensor, kwargs: dict):
        return self.model(inputs_embeds=inputs_embeds, **kwargs)


class HardTokenOnly(TransformersDenoiser):
    """For models without `inputs_embeds`: inputs must be exact embedding-table rows, sent as token ids."""

    def _forward(self, inputs_embeds: torch.Tensor, kwargs: dict):
        return self.model(input_ids=embeds_to_ids(inputs_embeds, self.embedding_table(), self.folder), **kwargs)


def embeds_to_ids(embeds: torch.Tensor, table: torch.Tensor, folder: Path | str = "model") -> torch.Tensor:
    """(N, L) long ids whose table rows equal `embeds` (N, L, D) exactly; AdapterError on any soft input."""
    flat = embeds.reshape(-1, embeds.shape[-1]).to(table.dtype)  # (N*L, D)
    table32 = table.detach().float()
    norms = table32.pow(2).sum(-1)  # (V,)
    ids = torch.empty(flat.shape[0], dtype=torch.long, device=flat.device)
    for lo in range(0, flat.shape[0], _ROWS_PER_LOOKUP):
        chunk = flat[lo:lo + _ROWS_PER_LOOKUP].detach().float()
        ids[lo:lo + _ROWS_PER_LOOKUP] = (norms - 2 * chunk @ table32.T).argmin(-1)  # nearest row: candidate
    exact = (table[ids] == flat).all(-1)  # the candidate must match bit for bit
    for i in (~exact).nonzero().flatten().tolist():
        # Rounding in the distance can prefer a near-duplicate row; search exactly before giving up.
        hits = (table == flat[i]).all(-1).nonzero().flatten()
        if hits.numel():
            ids[i], exact[i] = hits[0], True
    if not bool(exact.all()):
        raise AdapterError(
            f"{folder}: {int((~exact).sum())} input position(s) are soft embeddings (not rows of the embedding "
            f"table), but this model takes token ids only (its forward has no `inputs_embeds`). SPD and other "
            f"soft-embedding strategies cannot run on it; use a hard-token strategy ({HARD_TOKEN_STRATEGIES})."
        )
    return ids.view(embeds.shape[:-1])


def _logits_of(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if getattr(output, "logits", None) is not None:
        return output.logits
    return output[0]  # tuple outputs (return_dict=False): logits first


# -- loading ------------------------------------------------------------------------------------------
def load_adapter(path: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                 hard_token_only: bool = False, trust_remote_code: bool = False, native: bool = True):
    """(denoiser, tokenizer) for a local checkpoint folder; raises `AdapterError` saying what to fix.

    hard_token_only: accept a model whose forward takes no `inputs_embeds`, wrapped in `HardTokenOnly`
    (hard-token strategies work; soft inputs raise).
    trust_remote_code: allow a folder whose config.json / tokenizer_config.json has an `auto_map`, i.e. whose
    own Python files transformers imports (LLaDA, Dream, LLaDA-2.0); refused otherwise, before any import.
    native: load a LLaDA folder whose weights map onto the native model into it (`workbench.models.conversion`);
    False runs the folder's own modelling code.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise AdapterError(f"{folder}: no such folder. load_adapter needs a local checkpoint folder "
                           f"(config.json, weights, tokenizer files); nothing is downloaded at run time, so "
                           f"fetch it first, e.g. `huggingface-cli download ORG/NAME --local-dir {folder}`")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise AdapterError(f"{folder}: holds no config.json, so it is not a transformers checkpoint; point to "
                           f"the folder written by save_pretrained (with config.json, weights and tokenizer)")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        raise AdapterError(f"{config_file}: not valid JSON ({err.msg}); copy the checkpoint again") from None
    try:
        require_trust(folder, raw, trust_remote_code)
    except ModelLoadError as err:
        raise AdapterError(str(err)) from None
    if raw.get("model_type") == "workbench-denoiser":
        from workbench.models.native import NativeDenoiser
        from workbench.models.tokenizer import load_tokenizer

        model = from_pretrained_strict(NativeDenoiser, folder)
        return _place(model, dtype, device), load_tokenizer(folder)

    remote = "auto_map" in raw
    tokenizer = _load_tokenizer(folder, trust_remote_code)
    if remote and native:
        converted = _load_converted(folder, raw, tokenizer)
        if converted is not None:
            return _place(converted, dtype, device), tokenizer
    if remote:
        adapter = _load_remote(folder, raw, tokenizer, dtype, hard_token_only)
    else:
        adapter = _load_masked_lm(folder, tokenizer, dtype, hard_token_only)
    return _place(adapter, dtype, device), tokenizer


def _place(model: nn.Module, dtype, device) -> nn.Module:
    if dtype is not None or device is not None:
        model = model.to(device=device, dtype=dtype)
    return model.eval()


def _load_tokenizer(folder: Path, trust_remote_code: bool):
    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                          trust_remote_code=trust_remote_code)
    except Exception as err:  # transformers raises OSError/ValueError/KeyError for missing or bad files
        raise AdapterError(f"{folder}: cannot load its tokenizer ({type(err).__name__}: {err}); save the "
                           f"tokenizer into the same folder (tokenizer.save_pretrained)") from None


def _no_mask_token(folder: Path) -> AdapterError:
    return AdapterError(f"{folder}: the tokenizer has no mask token, and diffusion decoding needs one. Add it "
                        f"(tokenizer.add_special_tokens({{'mask_token': '[MASK]'}}), resize the model's embeddings, "
                        f"save both) or set `mask_token_id` in config.json")


def _load_masked_lm(folder: Path, tokenizer, dtype, hard_token_only: bool) -> TransformersDenoiser:
    mask_id = tokenizer.mask_token_id
    if mask_id is None:
        raise _no_mask_token(folder)
    try:
        model = from_pretrained_strict(transformers.AutoModelForMaskedLM, folder, dtype=dtype)
    except WeightMismatchError:
        raise
    except Exception as err:
        raise AdapterError(f"{folder}: cannot load it as a transformers masked LM ({type(err).__name__}: {err}). "
                           f"Built-in architectures need a masked-LM head (BERT, RoBERTa, ModernBERT...); "
                           f"remote-code dLLMs need `auto_map` in config.json and their modelling files") from None
    eos_id = _first_id(tokenizer.sep_token_id, tokenizer.eos_token_id, model.config.eos_token_id)
    if eos_id is None:
        raise AdapterError(f"{folder}: the tokenizer has neither a [SEP] nor an EOS token to end answers with; "
                           f"add one (tokenizer.add_special_tokens) and save the tokenizer")
    pad_id = _first_id(tokenizer.pad_token_id, model.config.pad_token_id, eos_id)
    embeddings = getattr(model.base_model, "embeddings", None)
    offset = 0
    if hasattr(embeddings, "create_position_ids_from_inputs_embeds"):
        offset = embeddings.padding_idx + 1  # RoBERTa family: positions count from padding_idx + 1
    profile = attrs.evolve(MASKED_LM, position_offset=offset)
    return _wrap(model, profile, folder, hard_token_only, mask_id=mask_id, eos_id=eos_id, pad_id=pad_id)


def _special_ids(folder: Path, profile: ModelProfile, config, tokenizer) -> dict:
    """mask / eos / pad ids: the folder's config.json first, then its tokenizer, then the profile's constants
    (a folder with its own ids is driven with them)."""
    mask_id = _first_id(getattr(config, "mask_token_id", None), tokenizer.mask_token_id, profile.mask_id)
    if mask_id is None:
        raise _no_mask_token(folder)
    if tokenizer.mask_token_id is not None and tokenizer.mask_token_id != mask_id:
        warnings.warn(f"{folder}: tokenizer mask id {tokenizer.mask_token_id} differs from {mask_id} "
                      f"(config.json's mask_token_id); using {mask_id}", stacklevel=4)
    eos_id = _first_id(getattr(config, "eos_token_id", None), tokenizer.eos_token_id, profile.eos_id,
                       tokenizer.sep_token_id)
    if eos_id is None:
        raise AdapterError(f"{folder}: no EOS id in config.json, the tokenizer or the profile; set `eos_token_id` "
                           f"in config.json")
    pad_id = _first_id(tokenizer.pad_token_id, getattr(config, "pad_token_id", None), eos_id)
    return dict(mask_id=mask_id, eos_id=eos_id, pad_id=pad_id)


def load_llada_native(folder: str | Path, *, trust_remote_code: bool = False):
    """The LLaDA checkpoint in `folder` as a NativeDenoiser (what `workbench train --init` post-trains).
    AdapterError naming what keeps it from mapping onto the native model, or the tensors it cannot place."""
    from workbench.models import conversion

    folder = Path(folder)
    raw = json.loads((folder / "config.json").read_text())
    reasons = conversion.llada_mapping(raw)
    if reasons:
        raise AdapterError(f"{folder}: this LLaDA checkpoint does not map onto the native model ({'; '.join(reasons)})")
    try:
        return _load_converted(folder, raw, _load_tokenizer(folder, trust_remote_code), fallback=False)
    except conversion.NotMappable as err:
        raise AdapterError(str(err)) from None


def _load_converted(folder: Path, raw: dict, tokenizer, fallback: bool = True):
    """A LLaDA folder whose weights map onto the native model, loaded into it; None when it does not map (with
    `fallback`, also when the file holds tensors the mapping has no place for)."""
    from workbench.models import conversion

    if conversion.llada_mapping(raw):
        return None
    ids = _special_ids(folder, LLADA, SimpleNamespace(**raw), tokenizer)
    rows = conversion.native_config(raw).vocab_size
    for what, token in ids.items():
        if not 0 <= token < rows:
            raise AdapterError(f"{folder}: {what.replace('_id', '')} id {token} is outside the embedding table "
                               f"({rows} rows): fix `{what.replace('_id', '_token_id')}` in config.json")
    try:
        model = conversion.load_llada(folder, raw, **ids)
    except conversion.NotMappable as err:
        if not fallback:
            raise
        warnings.warn(f"{err}; running the folder's own modelling code instead", stacklevel=3)
        return None
    model.profile = LLADA  # read by --chat-template auto
    return model


def transformers4_compatible(cls: type, *, own_from_pretrained: bool = True) -> type:
    """A subclass of a remote-code model class written for transformers 4 that loads under transformers 5.

    - `post_init()` is called after the class's own `__init__` when that never called it (LLaDA's published
      `LLaDAModelLM`): transformers 5 reads `all_tied_weights_keys`, which `post_init` sets.
    - A `tie_weights(self)` without parameters is called without the `missing_keys` / `recompute_mapping`
      arguments transformers 5 passes.
    - `own_from_pretrained=False` (the profile's fact): the class's `from_pretrained` override is skipped
      (Dream's, see `workbench.models.remote_compat`).
    The folder's files are never edited.
    """
    params = inspect.signature(cls.tie_weights).parameters.values()
    old_tie = not any(p.kind is p.VAR_KEYWORD or p.name == "missing_keys" for p in params)
    namespace: dict = {"__module__": cls.__module__, "__doc__": cls.__doc__}

    def __init__(self, *args, **kwargs):
        cls.__init__(self, *args, **kwargs)
        if not hasattr(self, "all_tied_weights_keys"):
            self.post_init()

    namespace["__init__"] = __init__
    if old_tie:
        def tie_weights(self, missing_keys=None, recompute_mapping=True):
            cls.tie_weights(self)

        namespace["tie_weights"] = tie_weights
    if not own_from_pretrained:
        namespace = plain_from_pretrained(namespace)
    return type(cls.__name__, (cls,), namespace)


def _missing_packages(err: ImportError) -> list[str]:
    """The packages transformers' import check names (`... not found in your environment: a, b. Run ...`)."""
    found = re.search(r"not found in your environment: (.+?)\. Run", str(err))
    return [p.strip() for p in found.group(1).split(",")] if found else ([err.name] if err.name else [])


def _import_error(folder: Path, err: ImportError) -> AdapterError:
    missing = _missing_packages(err) or ["a package"]
    extras = sorted({EXTRAS[p] for p in missing if p in EXTRAS})
    fix = (f"pip install 'dllm-workbench[{','.join(extras)}]' (in a checkout: pip install -e '.[{','.join(extras)}]')"
           if extras else f"pip install {' '.join(missing)}")
    return AdapterError(f"{folder}: its modelling code imports {', '.join(missing)}, which is not installed; {fix}")


def _remote_class(folder: Path, raw: dict, auto_key: str, profile: ModelProfile):
    """The model class `auto_map[auto_key]` names, imported from the folder (transformers copies it into its
    module cache), made loadable under transformers 5 (its module's RoPE table completed, see
    `workbench.models.remote_compat`); None when `auto_map` has no entry for `auto_key`."""
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    target = raw.get("auto_map", {}).get(auto_key)
    if target is None:
        return None
    ref = target[0] if isinstance(target, list) else target
    cls = get_class_from_dynamic_module(ref, str(folder), local_files_only=True)
    restore_default_rope(sys.modules[cls.__module__])
    return transformers4_compatible(cls, own_from_pretrained=profile.own_from_pretrained)


def _load_remote(folder: Path, raw: dict, tokenizer, dtype, hard_token_only: bool) -> TransformersDenoiser:
    common = dict(local_files_only=True, trust_remote_code=True)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), **common)
    except ImportError as err:
        raise _import_error(folder, err) from None
    profile = match_profile(raw.get("model_type"), raw.get("architectures"))
    if profile is None:
        profile = attrs.evolve(GENERIC_REMOTE, block_causal=bool(getattr(config, "block_causal", False)))
    ids = _special_ids(folder, profile, config, tokenizer)
    auto_key = _auto_class(raw, profile)
    try:
        cls = _remote_class(folder, raw, auto_key, profile)
        if cls is None:
            model = from_pretrained_strict(getattr(transformers, auto_key), folder, dtype=dtype, trust_remote_code=True)
        else:
            model = from_pretrained_strict(cls, folder, config=config, dtype=dtype)
    except WeightMismatchError:
        raise
    except ImportError as err:
        raise _import_error(folder, err) from None
    except Exception as err:
        raise AdapterError(f"{folder}: the remote code failed to load via {auto_key} ({type(err).__name__}: {err}); "
                           f"check the modelling files beside config.json and the transformers version they "
                           f"were written for") from None
    restored = restore_rotary_buffers(model)  # transformers 5 leaves them uninitialised (remote_compat, 4)
    left = unrestored_buffers(model, restored)
    if left:
        warnings.warn(f"{folder}: transformers {transformers.__version__} leaves the remote code's non-persistent "
                      f"buffers to its _init_weights, which may not set them: {', '.join(left)}; check that the "
                      f"model's outputs are sane", stacklevel=3)
    adapter = _wrap(model, profile, folder, hard_token_only, **ids)
    adapter.rotary_restored = bool(restored)
    if adapter.honours_padding is None:
        adapter.honours_padding = honours_padding(adapter)
    return adapter


def honours_padding(adapter: TransformersDenoiser) -> bool:
    """Whether left padding leaves a row's logits unchanged (a model of an unknown family, probed at load):
    one short row alone and behind two padding positions, compared at its own positions."""
    table = adapter.embedding_table()
    ids = torch.arange(1, 6, device=table.device) % table.shape[0]  # (5,) any ordinary ids
    alone = table[ids][None]  # (1, 5, D)
    padded = torch.cat([table[adapter.pad_id].expand(1, 2, -1), alone], dim=1)  # (1, 7, D)
    valid = torch.tensor([[False, False] + [True] * 5], device=table.device)
    with torch.no_grad():
        a = adapter._denoise(alone, torch.zeros(1, 5, dtype=torch.long, device=table.device),
                             torch.ones(1, 5, dtype=torch.bool, device=table.device)).float()
        b = adapter._denoise(padded, torch.zeros(1, 7, dtype=torch.long, device=table.device), valid).float()
    first = 1 if adapter.profile.logits_shift else 0  # a shifted row's first logits come from the padding
    tolerance = (5e-2 if table.dtype in (torch.bfloat16, torch.float16) else 1e-4) * max(1.0, float(a.abs().max()))
    return bool((a[0, first:] - b[0, 2 + first:]).abs().max() <= tolerance)


def _auto_class(raw: dict, profile: ModelProfile) -> str:
    """The auto class whose `auto_map` entry is the saved architecture; else the profile's; else any."""
    auto_map: dict = raw.get("auto_map", {})
    architectures = raw.get("architectures") or []
    for key, target in auto_map.items():
        name = target[0] if isinstance(target, list) else target  # tokenizers map to [slow, fast]
        if key != "AutoConfig" and name and name.rsplit(".", 1)[-1] in architectures:
            return key
    for key in (profile.auto_class, "AutoModelForMaskedLM", "AutoModelForCausalLM", "AutoModel"):
        if key in auto_map:
            return key
    return profile.auto_class


def _wrap(model, profile: ModelProfile, folder: Path, hard_token_only: bool, **ids) -> TransformersDenoiser:
    adapter = TransformersDenoiser(model, profile, folder=folder, **ids)
    if adapter.accepts_inputs_embeds:
        return adapter
    if not hard_token_only:
        raise AdapterError(
            f"{folder}: {type(model).__name__}.forward takes no `inputs_embeds`, so SPD and other soft-embedding "
            f"strategies cannot run on it. Hard-token strategies ({HARD_TOKEN_STRATEGIES}) can: load it with "
            f"load_adapter(path, hard_token_only=True), which feeds token ids and refuses soft inputs"
        )
    return HardTokenOnly(model, profile, folder=folder, **ids)


def _first_id(*candidates) -> int | None:
    for value in candidates:
        if isinstance(value, (list, tuple)):  # some configs list several EOS ids; the first is canonical
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return None
