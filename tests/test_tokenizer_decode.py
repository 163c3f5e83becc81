"""`workbench.models.tokenizer.decode` on a byte-level BPE tokenizer (Qwen2 / Dream / LLaMA-3 style, trained here
with the `tokenizers` library, offline) and on the native character tokenizer, whose output must not change."""

from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from workbench.models.tokenizer import (
    UNK_ID, UNKNOWN_TEXT, build_char_tokenizer, decode, encode, load_tokenizer,
)
from workbench.models.folders import default_model_path
from workbench.tasks.jsonl import JsonlTask

CORPUS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May? #### 72",
    "Le café coûte 3,50 € — naïve façade, Straße, 東京, ✓ done.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
]


@pytest.fixture(scope="module")
def byte_bpe() -> PreTrainedTokenizerFast:
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>", "<|mask|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|endoftext|>", mask_token="<|mask|>",
                                   pad_token="<|endoftext|>")


def test_byte_level_bpe_decodes_to_the_text_not_to_token_glyphs(byte_bpe):
    for text in CORPUS + ["The answer is 1,234 apples", "ünïcödé and  two spaces"]:
        ids = encode(byte_bpe, text)
        raw = "".join(byte_bpe.convert_ids_to_tokens(ids))
        assert "Ġ" in raw or not any(c == " " for c in text)  # the glyphs a join of token strings shows
        assert decode(byte_bpe, ids) == text


def test_special_tokens_are_dropped_and_unknown_ids_become_a_replacement_character(byte_bpe):
    ids = encode(byte_bpe, "sold 48 clips")
    eos, mask = byte_bpe.eos_token_id, byte_bpe.mask_token_id
    assert decode(byte_bpe, [mask] + ids + [eos, eos]) == "sold 48 clips"
    beyond = len(byte_bpe) + 7  # an embedding row the tokenizer has no token for
    assert decode(byte_bpe, ids + [beyond] + ids) == f"sold 48 clips{UNKNOWN_TEXT}sold 48 clips"


def test_tasks_score_bpe_decoded_answers(byte_bpe, tmp_path):
    numbers, texts = tmp_path / "gsm.jsonl", tmp_path / "text.jsonl"
    numbers.write_text('{"prompt": "q", "answer": "... #### 1234"}\n')
    texts.write_text('{"prompt": "r", "answer": "sold half as many"}\n')
    number, exact = JsonlTask(numbers), JsonlTask(texts, match="exact")
    assert number.check(number.examples[0], decode(byte_bpe, encode(byte_bpe, "Natalia sold 1,234 clips. #### 1,234")))
    assert exact.check(exact.examples[0], decode(byte_bpe, encode(byte_bpe, "sold half as many")))


def _joined(tokenizer, ids):
    """The character tokenizer's decode before byte-level tokenizers were handled (the reference)."""
    specials, size = set(tokenizer.all_special_ids), len(tokenizer)
    kept = [int(i) for i in ids if i not in specials]
    tokens = tokenizer.convert_ids_to_tokens([i if 0 <= i < size else UNK_ID for i in kept])
    return "".join(t if 0 <= i < size and t is not None else UNKNOWN_TEXT for i, t in zip(kept, tokens))


@pytest.mark.parametrize("source", ["built", "shipped"])
def test_char_tokenizer_output_is_unchanged(source):
    tokenizer = build_char_tokenizer() if source == "built" else load_tokenizer(default_model_path("oput"))
    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.randrange(len(tokenizer) + 3) for _ in range(rng.randrange(1, 30))]
        assert decode(tokenizer, ids) == _joined(tokenizer, ids)
    assert decode(tokenizer, encode(tokenizer, "12 + 3 = 15\n")) == "12 + 3 = 15\n"
