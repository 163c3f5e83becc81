"""Character-level tokenizer for the native model, built with `tokenizers` and saved beside the weights.

Every printable character of the synthetic tasks is one token; special tokens have fixed ids so that a
config and a tokenizer can never disagree about [MASK] or [EOS].
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, MASK, EOS, UNK = "[PAD]", "[MASK]", "[EOS]", "[UNK]"
PAD_ID, MASK_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
FIRST_ORDINARY_ID = 4  # ids below are the special tokens; uniform noise is drawn from the ordinary ones
SPECIAL_TOKENS = (PAD, MASK, EOS, UNK)
UNKNOWN_TEXT = "\ufffd"  # what decode() writes for an id outside the tokenizer's vocabulary
# Characters of the built-in tasks and of ordinary ASCII text; order fixes the ids, so only append.
CHARACTERS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ =+-*/%|;:,.?!>#()[]_'\"\n"


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARACTERS:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own pre-token: a WordLevel model over single characters is a char tokenizer.
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, mask_token=MASK, eos_token=EOS, unk_token=UNK,
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """The tokenizer saved in the model folder `path`; never looks anything up on a hub.

    ValueError (ModelLoadError) naming the folder when it is not a local folder or holds no tokenizer.json.
    """
    from workbench.models.folders import ModelLoadError

    folder = Path(path)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder} is not a local folder; tokenizers are read from the model folder only, "
                             f"nothing is downloaded (fetch it first, e.g. `huggingface-cli download NAME "
                             f"--local-dir DIR`)")
    if not (folder / "tokenizer.json").is_file():
        raise ModelLoadError(f"{folder} holds no tokenizer.json; the native model's tokenizer is saved beside its "
                             f"weights (`workbench train` writes it): copy it from the folder the model came from")
    try:
        return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # tokenizers/transformers raise several types for a damaged file
        raise ModelLoadError(f"{folder / 'tokenizer.json'} cannot be read ({type(err).__name__}: {err}); "
                             f"copy the model folder again") from None


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_prompt(tokenizer: PreTrainedTokenizerFast, text: str, chat_template: bool = False) -> list[int]:
    """A prompt's ids: `text` as it is, or (`chat_template`) as one user turn rendered with the tokenizer's chat
    template, followed by the assistant turn's opening (what instruct checkpoints are trained on)."""
    if not chat_template:
        return encode(tokenizer, text)
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                             tokenize=False)
    # The template writes the special tokens (BOS, turn markers) itself: add none twice.
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def decode(tokenizer: PreTrainedTokenizerFast, ids: list[int]) -> str:
    """Text of `ids` with special tokens dropped (what `task.check` scores).

    A tokenizer with a decoder (byte-level BPE of Qwen2 / Dream / LLaMA-3, SentencePiece's Metaspace,
    WordPiece) decodes with its own `decode(skip_special_tokens=True)`, so `Ġ` and byte glyphs become spaces
    and UTF-8 text. One without a decoder (the native character tokenizer) has its token strings joined with
    no spaces between them: `decode` would put a space between every two characters, and the shipped
    results were scored on the joined text.

    An id the tokenizer does not know (the model's embedding table may have more rows than the tokenizer
    has tokens) becomes U+FFFD, so a decode never fails on what a model generated.
    """
    size = len(tokenizer)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.decoder is None:
        return _join_tokens(tokenizer, ids, size)
    parts, run = [], []
    for i in (int(i) for i in ids):
        if 0 <= i < size:
            run.append(i)
            continue
        parts += [tokenizer.decode(run, skip_special_tokens=True) if run else "", UNKNOWN_TEXT]
        run = []
    parts.append(tokenizer.decode(run, skip_special_tokens=True) if run else "")
    return "".join(parts)


def _join_tokens(tokenizer: PreTrainedTokenizerFast, ids: list[int], size: int) -> str:
    """The token strings of `ids` joined as they are (tokenizers without a decoder: the character tokenizer)."""
    specials = set(tokenizer.all_special_ids)
    kept = [int(i) for i in ids if i not in specials]
    tokens = tokenizer.convert_ids_to_tokens([i if 0 <= i < size else UNK_ID for i in kept])
    return "".join(t if 0 <= i < size and t is not None else UNKNOWN_TEXT for i, t in zip(kept, tokens))
