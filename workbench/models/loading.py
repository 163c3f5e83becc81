"""Turn a `--model PATH` / `--trainer NAME` into a Denoiser and its tokenizer.

Shipped default models live inside the package (`workbench/default_models/<trainer>`), so the main
command needs no training and no download. A folder written by `workbench train` is a native model;
anything else is handed to the transformers adapters.

Nothing is fetched from a hub (a name that is not a local folder is refused at once), and a folder whose
config.json or tokenizer_config.json has an `auto_map` (Python files that transformers would import and run)
loads only with `trust_remote_code=True` (`--trust-remote-code` on the command line).
"""

from __future__ import annotations

from pathlib import Path

from workbench.models.folders import ModelLoadError, WeightMismatchError, from_pretrained_strict, read_model_config


def load_model(path: str | Path, *, dtype=None, trust_remote_code: bool = False, native: bool = True):
    """(denoiser, tokenizer) from a local folder; raises ModelLoadError with a fix on bad input.

    trust_remote_code: allow a checkpoint whose folder carries its own modelling code (LLaDA, Dream...).
    native: a LLaDA folder whose weights map onto the native model loads into it (every cache mode, masked
    padding); False runs the folder's own code (`workbench.models.adapters.load_adapter`).
    """
    path = Path(path)
    model_type = read_model_config(path, trust_remote_code=trust_remote_code).get("model_type")
    if model_type == "workbench-denoiser":
        from workbench.models.native import NativeDenoiser
        from workbench.models.tokenizer import load_tokenizer

        try:
            model = from_pretrained_strict(NativeDenoiser, path)
        except WeightMismatchError:
            raise
        except Exception as err:  # safetensors/transformers raise many types for a damaged file
            raise ModelLoadError(f"cannot load the weights in {path}: {err}; the checkpoint is corrupt, "
                                 f"retrain or copy it again") from None
        tokenizer = load_tokenizer(path)
        if getattr(model.config, "converted_from", None) == "llada":  # post-trained from a LLaDA checkpoint
            from workbench.models.profiles import LLADA

            model.profile = LLADA  # its chat template, as for the checkpoint it came from
    elif model_type == "diffusion_gemma":  # transformers' own uniform-state block-diffusion model
        from workbench.models.diffusion_gemma import load_diffusion_gemma

        try:
            model, tokenizer = load_diffusion_gemma(path)
        except ModelLoadError:  # a missing tensor or tokenizer, named with the fix
            raise
        except Exception as err:  # transformers raises OSError/ValueError/KeyError for missing or bad files
            raise ModelLoadError(f"cannot load the DiffusionGemma folder {path} ({type(err).__name__}: {err}); it "
                                 f"needs config.json, the weights and the tokenizer files") from None
    else:
        from workbench.models.adapters import load_adapter

        model, tokenizer = load_adapter(path, trust_remote_code=trust_remote_code, native=native)
    if dtype is not None:
        model = model.to(dtype)
    return model.eval() if hasattr(model, "eval") else model, tokenizer
