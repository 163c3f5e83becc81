"""Transformers checkpoints from a local folder as `Denoiser`s: built-in masked LMs and remote-code dLLMs.

`load_adapter(folder)` reads config.json without running any code, then:
- built-in architectures (no `auto_map`): `AutoModelForMaskedLM` (BERT, RoBERTa, DistilBERT, ModernBERT...),
  bidirectional, special ids from the tokenizer ([MASK]; [SEP] or EOS; [PAD]);
- remote-code checkpoints (`auto_map` in config.json): loaded only when the caller passes
  `trust_remote_code=True` (their modelling files run in this process), from the folder, and driven as the
  family profile in profiles.py says (LLaDA, Dream, LLaDA-2.0 / DMax, else generic).
Nothing is fetched from a hub: every transformers call passes `local_files_only=True`.

A model whose forward takes no `inputs_embeds` cannot receive soft inputs (SPD's hybrid embeddings). With
`hard_token_only=True` it is wrapped in `HardTokenOnly`, which maps every input embedding back to the
token id whose embedding row it equals exactly, and refuses soft inputs with a clear error.
"""

from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path

import attrs
import torch
import transformers
from torch import nn

from workbench.models.loading import ModelLoadError, WeightMismatchError, from_pretrained_strict, require_trust
from workbench.models.masks import decode_attention_mask, position_ids_from_valid
from workbench.models.profiles import GENERIC_REMOTE, MASKED_LM, ModelProfile, match_profile

HARD_TOKEN_STRATEGIES = "threshold, hierarchical, hard"
_ROWS_PER_LOOKUP = 256  # rows of (rows, V) distance matrix per chunk in HardTokenOnly: bounded memory


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
        output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        weight = getattr(output, "weight", None)
        self.vocab_size = int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)
        rows = self.embedding_table().shape[0]
        for what, token in (("mask", self.mask_id), ("eos", self.eos_id), ("pad", self.pad_id)):
            if not 0 <= token < rows:
                raise AdapterError(f"{folder}: {what} id {token} is outside the embedding table ({rows} rows); "
                                   f"profile {profile.name!r} does not fit this checkpoint: fix the "
                                   f"tokenizer/config ids or add a profile in workbench/models/profiles.py")

    # -- Denoiser protocol --------------------------------------------------------------------------
    def embedding_table(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight  # (V, D), unscaled

    def mask_embedding(self) -> torch.Tensor:
        return self.embedding_table()[self.mask_id]  # (D,)

    def denoise(self, inputs_embeds: torch.Tensor, *, block_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
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
                 hard_token_only: bool = False, trust_remote_code: bool = False):
    """(denoiser, tokenizer) for a local checkpoint folder; raises `AdapterError` saying what to fix.

    hard_token_only: accept a model whose forward takes no `inputs_embeds`, wrapped in `HardTokenOnly`
    (hard-token strategies work; soft inputs raise).
    trust_remote_code: allow a folder whose config.json / tokenizer_config.json has an `auto_map`, i.e. whose
    own Python files transformers imports (LLaDA, Dream, LLaDA-2.0); refused otherwise, before any import.
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


def _load_remote(folder: Path, raw: dict, tokenizer, dtype, hard_token_only: bool) -> TransformersDenoiser:
    common = dict(local_files_only=True, trust_remote_code=True)
    config = transformers.AutoConfig.from_pretrained(str(folder), **common)
    profile = match_profile(raw.get("model_type"), raw.get("architectures"))
    if profile is None:
        profile = attrs.evolve(GENERIC_REMOTE, block_causal=bool(getattr(config, "block_causal", False)))
    mask_id = _first_id(profile.mask_id, getattr(config, "mask_token_id", None), tokenizer.mask_token_id)
    if mask_id is None:
        raise _no_mask_token(folder)
    if tokenizer.mask_token_id is not None and tokenizer.mask_token_id != mask_id:
        warnings.warn(f"{folder}: tokenizer mask id {tokenizer.mask_token_id} differs from {mask_id} "
                      f"(profile {profile.name!r} / config); using {mask_id}", stacklevel=3)
    eos_id = _first_id(profile.eos_id, config.eos_token_id, tokenizer.eos_token_id, tokenizer.sep_token_id)
    if eos_id is None:
        raise AdapterError(f"{folder}: no EOS id in the profile, config.json or tokenizer; set `eos_token_id` "
                           f"in config.json")
    pad_id = _first_id(tokenizer.pad_token_id, config.pad_token_id, eos_id)
    auto_key = _auto_class(raw, profile)
    try:
        model = from_pretrained_strict(getattr(transformers, auto_key), folder, dtype=dtype, trust_remote_code=True)
    except WeightMismatchError:
        raise
    except Exception as err:
        raise AdapterError(f"{folder}: the remote code failed to load via {auto_key} ({type(err).__name__}: {err}); "
                           f"check the modelling files beside config.json and the transformers version they "
                           f"were written for") from None
    return _wrap(model, profile, folder, hard_token_only, mask_id=mask_id, eos_id=eos_id, pad_id=pad_id)


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
