"""Model folders read safely: where the shipped models live, config.json read without running code, the
remote-code opt-in, and the strict weight check every `from_pretrained` goes through.

The bottom of `workbench.models`: it imports no other module of the package, so the tokenizer, the native
model, the adapters and the loader (`loading.load_model`) can all use it.
"""

from __future__ import annotations

import json
from pathlib import Path

DEFAULT_MODELS = Path(__file__).resolve().parent.parent / "default_models"
DEFAULT_TRAINER = "oput"


class ModelLoadError(ValueError):
    """A model folder that cannot be used; the message says what to do."""


def default_model_path(trainer: str) -> Path:
    path = DEFAULT_MODELS / trainer
    if not (path / "config.json").is_file():
        shipped = sorted(p.name for p in DEFAULT_MODELS.iterdir() if (p / "config.json").is_file()) \
            if DEFAULT_MODELS.is_dir() else []
        raise ModelLoadError(
            f"no shipped model for trainer {trainer!r}; shipped: {', '.join(shipped) or 'none'} "
            f"(or pass --model PATH to a model folder)"
        )
    return path


def read_model_config(path: str | Path, *, trust_remote_code: bool = False) -> dict:
    """config.json of the local model folder `path`, read without running anything; ModelLoadError saying
    what to do for a missing folder, a folder without config.json, bad JSON, or remote code not opted in."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model folder {path} does not exist: models are read from local folders only, "
                             f"nothing is downloaded (train one with `workbench train --out {path}`, or fetch a "
                             f"checkpoint first, e.g. `huggingface-cli download NAME --local-dir {path}`)")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file; give the model folder that holds its config.json")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{path} holds no config.json: not a model folder")
    try:
        raw = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{config_file} is not valid JSON ({err}); the checkpoint is corrupt") from None
    except RecursionError:  # nested deeper than Python's parser goes
        raise ModelLoadError(f"{config_file} is nested too deeply to be a model config; the checkpoint is "
                             f"corrupt") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{config_file} is not a JSON object; the checkpoint is corrupt")
    require_trust(path, raw, trust_remote_code)
    return raw


def remote_code_files(path: Path, raw: dict) -> list[str]:
    """The config files of the folder that name Python code to run (`auto_map`), empty for none."""
    found = ["config.json"] if "auto_map" in raw else []
    tokenizer_config = path / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            if "auto_map" in json.loads(tokenizer_config.read_text()):
                found.append("tokenizer_config.json")
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            pass  # the tokenizer loader reports a damaged file
    return found


def require_trust(path: Path, raw: dict, trust_remote_code: bool) -> None:
    """ModelLoadError unless the folder runs no code of its own or the caller opted in."""
    files = remote_code_files(path, raw)
    if files and not trust_remote_code:
        raise ModelLoadError(
            f"{path}: {' and '.join(files)} name{'s' if len(files) == 1 else ''} Python code in the folder "
            f"(`auto_map`), and loading the model would run it with your permissions. If you trust its author, "
            f"pass --trust-remote-code (Python: trust_remote_code=True); shipped and workbench-trained models "
            f"never need it")


class WeightMismatchError(ModelLoadError):
    """A checkpoint whose tensors do not fill the model: loading it would leave weights at random values."""


def _names(keys, limit: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_loading_info(path: str | Path, info: dict) -> None:
    """WeightMismatchError naming the tensors when `from_pretrained(..., output_loading_info=True)` reports
    missing or mis-shaped ones (transformers would initialise them at random and say so only in a log line).
    Unexpected tensors alone change nothing the model computes (every weight came from the file): a warning."""
    missing, unexpected = set(info.get("missing_keys") or ()), set(info.get("unexpected_keys") or ())
    mismatched = {k[0] if isinstance(k, (tuple, list)) else k for k in info.get("mismatched_keys") or ()}
    if missing or mismatched:
        parts = ([f"missing {_names(missing)}"] if missing else []) + (
            [f"of another shape {_names(mismatched)}"] if mismatched else []) + (
            [f"not in the model {_names(unexpected)}"] if unexpected else [])
        raise WeightMismatchError(
            f"{path}: the checkpoint's tensors do not match the model ({'; '.join(parts)}), so those weights would "
            f"be random and every number wrong. The weights file is incomplete or from another architecture or "
            f"version: copy the folder again, or convert it to this config")
    if unexpected:
        import warnings

        warnings.warn(f"{path}: tensors the model does not use were ignored: {_names(unexpected)}", stacklevel=3)


def dtype_argument(dtype) -> dict:
    """The `from_pretrained` keyword that sets the weights' dtype in the installed transformers: none for None
    (the checkpoint's own), `dtype` from transformers 5, `torch_dtype` before (transformers 4.46-4.55 pass an
    unknown `dtype` on to the model's `__init__`, where remote code fails with an unexpected keyword)."""
    if dtype is None:
        return {}
    import transformers

    return {"dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype": dtype}


def from_pretrained_strict(cls, path: str | Path, *, dtype=None, **kwargs):
    """`cls.from_pretrained(path, local_files_only=True, **kwargs)` with `dtype` passed as the installed
    transformers expects (`dtype_argument`), refused (`check_loading_info`) when the checkpoint leaves any weight
    of the model unfilled."""
    # ignore_mismatched_sizes: transformers would otherwise stop at a tensor of another shape with "look at the
    # above report" (a log line the CLI hides); this way the tensor comes back in the loading info, named.
    kwargs.setdefault("ignore_mismatched_sizes", True)
    model, info = cls.from_pretrained(str(path), local_files_only=True, output_loading_info=True,
                                      **dtype_argument(dtype), **kwargs)
    check_loading_info(path, info)
    return model
