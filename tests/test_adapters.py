"""Adapters: tiny random transformers checkpoints saved to a tmp folder and loaded back through load_adapter.

Built-in masked LMs (BERT, RoBERTa, DistilBERT, ModernBERT), remote-code models written here into the
folder (a LLaDA-typed, a Dream-typed and an unknown model), and the errors a user can hit.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from workbench.models.adapters import AdapterError, HardTokenOnly, embeds_to_ids, load_adapter
from workbench.models.base import Denoiser
from workbench.models.profiles import (DREAM, GENERIC_REMOTE, LLADA, LLADA2, LLADA2_MASK_ID, LLADA_MASK_ID,
                                      match_profile)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD, UNK, CLS, SEP, MASK = range(5)
WORDS = [f"w{i}" for i in range(27)]
VOCAB = 32


def tiny_tokenizer(*, with_mask: bool = True) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    kwargs = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]")
    if with_mask:
        kwargs["mask_token"] = "[MASK]"
    return PreTrainedTokenizerFast(tokenizer_object=core, **kwargs)


SMALL = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
             max_position_embeddings=40, pad_token_id=PAD)
ARCHITECTURES = {
    "bert": lambda: transformers.BertForMaskedLM(transformers.BertConfig(**SMALL)),
    "roberta": lambda: transformers.RobertaForMaskedLM(transformers.RobertaConfig(**SMALL)),
    "distilbert": lambda: transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(
        vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=40, pad_token_id=PAD)),
}
if hasattr(transformers, "ModernBertForMaskedLM"):
    ARCHITECTURES["modernbert"] = lambda: transformers.ModernBertForMaskedLM(transformers.ModernBertConfig(
        **SMALL, bos_token_id=CLS, eos_token_id=SEP, sep_token_id=SEP, cls_token_id=CLS))


def save(model, folder, tokenizer=None):
    model.save_pretrained(folder)
    (tokenizer or tiny_tokenizer()).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def masked_lm(request, tmp_path_factory):
    torch.manual_seed(0)
    folder = save(ARCHITECTURES[request.param]().eval(), tmp_path_factory.mktemp(request.param))
    adapter, tokenizer = load_adapter(folder)
    return adapter, tokenizer


def forward(adapter, ids, valid=None):
    valid = torch.ones_like(ids, dtype=torch.bool) if valid is None else valid
    embeds = adapter.embedding_table()[ids]  # (N, L, D)
    with torch.no_grad():
        return adapter.denoise(embeds, block_ids=torch.zeros_like(ids), valid=valid)


def test_masked_lm_protocol_attributes(masked_lm):
    adapter, tokenizer = masked_lm
    assert isinstance(adapter, Denoiser)
    assert (adapter.vocab_size, adapter.mask_id, adapter.eos_id, adapter.pad_id) == (VOCAB, MASK, SEP, PAD)
    assert adapter.block_causal is False and not adapter.training
    assert adapter.embedding_table().shape == (VOCAB, adapter.mask_embedding().shape[0])
    assert torch.equal(adapter.mask_embedding(), adapter.embedding_table()[MASK])
    assert tokenizer.mask_token_id == MASK


def test_masked_lm_shapes_and_parity_with_own_forward(masked_lm):
    adapter, _ = masked_lm
    ids = torch.tensor([[CLS, 5, 6, 7, MASK, MASK, SEP], [CLS, 9, MASK, 11, 12, 13, SEP]])
    logits = forward(adapter, ids)
    assert logits.shape == (2, 7, VOCAB)
    with torch.no_grad():
        own = adapter.model(input_ids=ids).logits
    torch.testing.assert_close(logits, own, atol=1e-5, rtol=1e-5)


def test_masked_lm_left_padding_matches_row_alone(masked_lm):
    adapter, _ = masked_lm
    alone = torch.tensor([[CLS, 5, 6, MASK, SEP]])
    batch = torch.tensor([[PAD, PAD, CLS, 5, 6, MASK, SEP], [CLS, 7, 8, 9, MASK, MASK, SEP]])
    valid = batch != PAD
    torch.testing.assert_close(forward(adapter, batch, valid)[0, 2:], forward(adapter, alone)[0],
                               atol=1e-5, rtol=1e-5)


# -- remote code ----------------------------------------------------------------------------------------
MODELLING = '''
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


class TinyConfig(PretrainedConfig):
    model_type = "MODEL_TYPE"

    def __init__(self, vocab_size=32, hidden_size=8, max_positions=64, mask_token_id=None, **kwargs):
        self.vocab_size, self.hidden_size, self.max_positions = vocab_size, hidden_size, max_positions
        self.mask_token_id = mask_token_id
        super().__init__(**kwargs)


class TinyDLLM(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_positions, config.hidden_size)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.5)

    def get_input_embeddings(self):
        return self.wte

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids=None, EMBEDS_ARG attention_mask=None, position_ids=None, use_cache=None):
        x = self.wte(input_ids) if input_ids is not None else EMBEDS_VALUE
        n, length, _ = x.shape
        if position_ids is None:
            position_ids = torch.arange(length, device=x.device).expand(n, length)
        h = x + self.wpe(position_ids)
        allowed = torch.ones(n, 1, length, length, dtype=torch.bool)
        if attention_mask is not None and attention_mask.dim() == 2:
            allowed = attention_mask.bool()[:, None, None, :].expand(n, 1, length, length)
        elif attention_mask is not None:
            allowed = attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        a = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None], attn_mask=allowed)[:, 0]
        return MaskedLMOutput(logits=self.head(h + a))
'''


def write_remote(folder, model_type, *, vocab_size=VOCAB, embeds=True, mask_token_id=None, tokenizer=None):
    code = MODELLING.replace("MODEL_TYPE", model_type)
    code = code.replace("EMBEDS_ARG", "inputs_embeds=None," if embeds else "")
    code = code.replace("EMBEDS_VALUE", "inputs_embeds" if embeds else "None")
    folder.mkdir()
    (folder / "modeling_tiny.py").write_text(code)
    # Import the file we just wrote to build and save the weights, as its author would have.
    spec = importlib.util.spec_from_file_location(f"tiny_{folder.name}", folder / "modeling_tiny.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    config = module.TinyConfig(vocab_size=vocab_size, mask_token_id=mask_token_id, eos_token_id=SEP,
                               pad_token_id=PAD)
    save(module.TinyDLLM(config).eval(), folder, tokenizer)
    raw = json.loads((folder / "config.json").read_text())
    raw["auto_map"] = {"AutoConfig": "modeling_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyDLLM"}
    raw["architectures"] = ["TinyDLLM"]
    (folder / "config.json").write_text(json.dumps(raw))
    return folder


def test_profiles_match_on_model_type_then_architecture():
    assert match_profile("llada", None) is LLADA and match_profile("Dream", None) is DREAM
    assert match_profile("llada2_moe", None) is LLADA2 and match_profile("x", ["LLaDA2MoeModelLM"]) is LLADA2
    assert match_profile("unknown", ["Nope"]) is None and LLADA2.block_causal and DREAM.logits_shift


def test_remote_llada_profile_falls_back_to_its_mask_id(tmp_path):
    # Neither config.json nor the tokenizer names a mask: the profile's constant (LLaDA's reserved 126336).
    folder = write_remote(tmp_path / "llada", "llada", vocab_size=LLADA_MASK_ID + 128,
                          tokenizer=tiny_tokenizer(with_mask=False))
    adapter, _ = load_adapter(folder, trust_remote_code=True)
    assert adapter.profile is LLADA and adapter.mask_id == LLADA_MASK_ID and not adapter.block_causal
    assert adapter.eos_id == SEP  # config.json's eos_token_id before the profile's
    ids = torch.tensor([[CLS, 5, 6, LLADA_MASK_ID, SEP]])
    logits = forward(adapter, ids)
    assert logits.shape == (1, 5, LLADA_MASK_ID + 128)
    with torch.no_grad():
        torch.testing.assert_close(logits, adapter.model(input_ids=ids).logits)


def test_remote_dream_profile_reads_mask_from_config_and_shifts_logits(tmp_path):
    folder = write_remote(tmp_path / "dream", "Dream", mask_token_id=30, tokenizer=tiny_tokenizer(with_mask=False))
    adapter, _ = load_adapter(folder, trust_remote_code=True)
    assert adapter.profile is DREAM and adapter.mask_id == 30 and adapter.eos_id == SEP
    ids = torch.tensor([[CLS, 5, 6, 30, SEP]])
    with torch.no_grad():
        raw = adapter.model(input_ids=ids).logits
    logits = forward(adapter, ids)
    torch.testing.assert_close(logits[:, 1:], raw[:, :-1])
    torch.testing.assert_close(logits[:, 0], raw[:, 0])


def test_remote_llada2_profile_is_block_causal(tmp_path):
    folder = write_remote(tmp_path / "llada2", "llada2_moe", vocab_size=LLADA2_MASK_ID + 8,
                          tokenizer=tiny_tokenizer(with_mask=False))
    adapter, _ = load_adapter(folder, trust_remote_code=True)
    assert adapter.profile is LLADA2 and adapter.block_causal
    assert (adapter.mask_id, adapter.eos_id) == (LLADA2_MASK_ID, SEP)  # the config's EOS, the profile's mask
    ids = torch.tensor([[CLS, 5, 6, 7, 8, 9], [CLS, 5, 6, 7, 10, 11]])  # rows differ only in block 2
    block_ids = torch.tensor([[0, 0, 1, 1, 2, 2]] * 2)
    with torch.no_grad():
        logits = adapter.denoise(adapter.embedding_table()[ids], block_ids=block_ids,
                                 valid=torch.ones_like(ids, dtype=torch.bool))
    torch.testing.assert_close(logits[0, :4], logits[1, :4])  # blocks 0-1 never see block 2
    assert not torch.allclose(logits[0, 4:], logits[1, 4:])


def test_unknown_remote_model_falls_back_to_generic_profile(tmp_path):
    adapter, _ = load_adapter(write_remote(tmp_path / "generic", "tiny-unknown"), trust_remote_code=True)
    assert adapter.profile.name == GENERIC_REMOTE.name and adapter.mask_id == MASK
    alone = torch.tensor([[CLS, 5, 6, MASK, SEP]])
    batch = torch.tensor([[PAD, PAD, CLS, 5, 6, MASK, SEP], [CLS, 7, 8, 9, MASK, MASK, SEP]])
    torch.testing.assert_close(forward(adapter, batch, batch != PAD)[0, 2:], forward(adapter, alone)[0])


def test_model_without_inputs_embeds(tmp_path):
    folder = write_remote(tmp_path / "ids-only", "tiny-unknown", embeds=False)
    with pytest.raises(AdapterError, match="SPD and other soft-embedding strategies cannot run") as err:
        load_adapter(folder, trust_remote_code=True)
    assert str(folder) in str(err.value) and "hard_token_only=True" in str(err.value)
    adapter, _ = load_adapter(folder, hard_token_only=True, trust_remote_code=True)
    assert isinstance(adapter, HardTokenOnly)
    ids = torch.tensor([[CLS, 5, 6, MASK, SEP]])
    with torch.no_grad():
        torch.testing.assert_close(forward(adapter, ids), adapter.model(input_ids=ids).logits)
    table = adapter.embedding_table()
    soft = 0.5 * table[ids] + 0.5 * adapter.mask_embedding()  # an SPD-style hybrid input
    with pytest.raises(AdapterError, match="soft embeddings"):
        adapter.denoise(soft, block_ids=torch.zeros_like(ids), valid=torch.ones_like(ids, dtype=torch.bool))
    assert torch.equal(embeds_to_ids(table[ids], table), ids)


# -- errors ---------------------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(AdapterError, match="no such folder") as err:
        load_adapter(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(err.value)


def test_folder_without_config(tmp_path):
    tiny_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(AdapterError, match="no config.json"):
        load_adapter(tmp_path)


def test_tokenizer_without_mask_token(tmp_path):
    torch.manual_seed(0)
    save(ARCHITECTURES["bert"](), tmp_path, tiny_tokenizer(with_mask=False))
    with pytest.raises(AdapterError, match="no mask token") as err:
        load_adapter(tmp_path)
    assert str(tmp_path) in str(err.value)


# -- decoding through an adapter --------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["threshold", "hierarchical", "hard", "spd"])
def test_builtin_strategies_decode_through_an_adapter(strategy, tmp_path_factory):
    loop = pytest.importorskip("workbench.decoding.loop")
    registry = pytest.importorskip("workbench.decoding.registry")
    state = pytest.importorskip("workbench.decoding.state")
    folder = tmp_path_factory.getbasetemp() / "decode-bert"
    if not folder.exists():
        torch.manual_seed(0)
        save(ARCHITECTURES["bert"]().eval(), folder)
    adapter, _ = load_adapter(folder)
    prompts = [[CLS, 5, 6, 7], [CLS, 8], [CLS, 9, 10]]
    config = state.DecodeConfig(max_new_tokens=8, block_size=4)
    with torch.no_grad():
        results = loop.generate(adapter, prompts, registry.make_manager(strategy), config)
    assert len(results) == len(prompts)
    for result in results:
        assert result.ids and all(0 <= t < VOCAB and t != MASK for t in result.ids)
        assert result.nfe >= 1 and result.ids.count(SEP) <= 1
