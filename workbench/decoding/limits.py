"""How long a sequence a model can take, checked before decoding starts.

A prompt plus its generated positions longer than the model's position table fails deep inside the forward
(`index 64 is out of bounds` on a BERT with 64 positions), and on a model without a table (the native model's
RoPE) a 200k-character prompt tries to allocate tens of GB for its (L, L) attention. `check_lengths` refuses
such a sample up front, naming it. `workbench.results.evaluate.evaluate` calls it on the samples it is about to decode,
`workbench trace` on its one sample; any other caller of `workbench.decoding.loop.generate` (the lm-eval harness) can
call it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DEFAULT_MAX_POSITIONS", "LengthError", "check_lengths", "max_positions", "preview"]

# For a model that declares no maximum (the native model: RoPE has no table). 4096 positions already make a
# (L, L) attention of 16 M entries per row and head; set `max_position_embeddings` in its config.json to allow more.
DEFAULT_MAX_POSITIONS = 4096
# Config fields that hold a position limit, by model family (BERT/LLaMA/Dream, LLaDA, GPT-2, others).
_LIMIT_FIELDS = ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length", "max_seq_len")
_PREVIEW = 40  # characters of a prompt quoted in the error


class LengthError(ValueError):
    """A prompt plus its generation does not fit the model; the message names the sample and the fix."""


def _config_of(model):
    config = getattr(model, "config", None)
    if config is None:  # transformers adapters keep the wrapped model's config there
        config = getattr(getattr(model, "model", None), "config", None)
    return config


def _configs(config):
    """(config, how to name its fields): the config itself, then the text config a composite one nests
    (DiffusionGemma, vision-language models: `text_config`, transformers' `get_text_config`)."""
    yield config, "its config's "
    get_text = getattr(config, "get_text_config", None)
    if callable(get_text):
        try:
            text = get_text(decoder=True)
        except (TypeError, ValueError):  # older transformers: no `decoder` argument
            text = get_text()
        if text is not None and text is not config:
            yield text, "its config's text_config."


def max_positions(model) -> tuple[int, str]:
    """(positions one row may hold, where that number comes from) for a `Denoiser`."""
    for config, where in _configs(_config_of(model)):
        for field in _LIMIT_FIELDS:
            value = getattr(config, field, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                # RoBERTa-style tables start counting at padding_idx + 1; the adapter's profile knows the offset.
                offset = int(getattr(getattr(model, "profile", None), "position_offset", 0) or 0)
                return value - offset, f"{where}{field}" + (f" minus {offset} reserved" if offset else "")
    return DEFAULT_MAX_POSITIONS, ("the limit for models that declare none (set max_position_embeddings in "
                                   "its config.json to allow more)")


def check_lengths(model, prompts: Sequence[Sequence[int]], gen_length: int, *,
                  names: Sequence[str] | None = None) -> None:
    """Raise `LengthError` for the first prompt whose length plus `gen_length` exceeds `max_positions(model)`.

    prompts: token ids per sample (as `generate` receives them); names: how to call each sample in the
    error (default `sample <i>`). Each row is checked on its own: a batch's left padding never counts,
    since every row's positions start at its first real token.
    """
    limit, source = max_positions(model)
    for i, ids in enumerate(prompts):
        need = len(ids) + gen_length
        if need <= limit:
            continue
        name = names[i] if names is not None else f"sample {i}"
        room = limit - gen_length
        fix = (f"shorten the prompt to at most {room} tokens or lower --gen-length" if room > 0
               else f"--gen-length {gen_length} alone exceeds it; lower --gen-length")
        raise LengthError(f"{name}: its prompt has {len(ids)} tokens and {gen_length} positions are generated "
                          f"({need} in all), but the model takes at most {limit} ({source}); {fix}")


def preview(text: str) -> str:
    """A short quote of a prompt for error messages."""
    return repr(text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…")
