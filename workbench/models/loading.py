"""Turn a `--model PATH` / `--trainer NAME` into a Denoiser and its tokenizer.

Shipped default models live inside the package (`workbench/default_models/<trainer>`), so the main
command needs no training and no download. A folder written by `workbench train` is a native model;
anything else is handed to the transformers adapters.

Nothing is fetched from a hub (a name that is not a local folder is refused at once), and a folder whose
config.json or tokenizer_config.json has an `auto_map` (Python files that transformers would import and run)
loads only with `trust_remote_code=True` (`--trust-remote-code` on the command line).
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


def load_model(path: str | Path, *, dtype=None, trust_remote_code: bool = False):
    """(denoiser, tokenizer) from a local folder; raises ModelLoadError with a fix on bad input.

    trust_remote_code: allow a checkpoint whose folder carries its own modelling code (LLaDA, Dream...).
    """
    path = Path(path)
    model_type = read_model_config(path, trust_remote_code=trust_remote_code).get("model_type")
    if model_type == "workbench-denoiser":
        from workbench.models.native import NativeDenoiser
        from workbench.models.tokenizer import load_tokenizer

        try:
            model = NativeDenoiser.from_pretrained(str(path), local_files_only=True)
        except Exception as err:  # safetensors/transformers raise many types for a damaged file
            raise ModelLoadError(f"cannot load the weights in {path}: {err}; the checkpoint is corrupt, "
                                 f"retrain or copy it again") from None
        tokenizer = load_tokenizer(path)
    elif model_type == "diffusion_gemma":  # transformers' own uniform-state block-diffusion model
        from workbench.models.diffusion_gemma import load_diffusion_gemma

        try:
            model, tokenizer = load_diffusion_gemma(path)
        except Exception as err:  # transformers raises OSError/ValueError/KeyError for missing or bad files
            raise ModelLoadError(f"cannot load the DiffusionGemma folder {path} ({type(err).__name__}: {err}); it "
                                 f"needs config.json, the weights and the tokenizer files") from None
    else:
        from workbench.models.adapters import load_adapter

        model, tokenizer = load_adapter(path, trust_remote_code=trust_remote_code)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval() if hasattr(model, "eval") else model, tokenizer
