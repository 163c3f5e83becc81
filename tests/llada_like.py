"""A remote-code model folder that behaves like LLaDA's published modelling file (a fake written for the tests).

Written here from the structure of the public `modeling_llada.py` (ML-GSAI/LLaDA, and the copy Fast-dLLM ships),
not copied from it: the same config fields, module names and tensor names (`model.transformer.blocks.i.q_proj`...),
and the same behaviour where it matters to the workbench:
- the attention ignores the attention mask (scaled_dot_product_attention with attn_mask=None);
- `LLaDAModelLM.__init__` never calls `post_init()`;
- `tie_weights(self)` takes no arguments (transformers 5 passes `missing_keys=` and `recompute_mapping=`);
- RMSNorm normalises in float32, RoPE is applied in float32 (rope_full_precision), SiLU-gated MLP;
- with `einops=True` the file imports einops at the top, as Fast-dLLM's copy does.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CONFIGURATION = '''
from transformers import PretrainedConfig


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"

    def __init__(self, d_model=32, n_heads=4, n_kv_heads=None, n_layers=2, mlp_ratio=4, mlp_hidden_size=None,
                 vocab_size=48, embedding_size=None, rope=True, alibi=False, rope_theta=10000.0,
                 rope_full_precision=True, rms_norm_eps=1e-5, weight_tying=False, include_bias=False,
                 include_qkv_bias=False, block_type="llama", layer_norm_type="rms", activation_type="silu",
                 input_emb_norm=False, scale_logits=False, attention_layer_norm=False, layer_norm_with_affine=True,
                 block_group_size=1, max_sequence_length=512, mask_token_id=None, **kwargs):
        self.d_model, self.n_heads, self.n_kv_heads, self.n_layers = d_model, n_heads, n_kv_heads, n_layers
        self.mlp_ratio, self.mlp_hidden_size = mlp_ratio, mlp_hidden_size
        self.vocab_size, self.embedding_size = vocab_size, embedding_size
        self.rope, self.alibi, self.rope_theta, self.rope_full_precision = rope, alibi, rope_theta, rope_full_precision
        self.rms_norm_eps, self.weight_tying = rms_norm_eps, weight_tying
        self.include_bias, self.include_qkv_bias = include_bias, include_qkv_bias
        self.block_type, self.layer_norm_type, self.activation_type = block_type, layer_norm_type, activation_type
        self.input_emb_norm, self.scale_logits = input_emb_norm, scale_logits
        self.attention_layer_norm, self.layer_norm_with_affine = attention_layer_norm, layer_norm_with_affine
        self.block_group_size, self.max_sequence_length = block_group_size, max_sequence_length
        self.mask_token_id = mask_token_id
        super().__init__(**kwargs)

    @property
    def effective_n_kv_heads(self):
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads
'''

MODELLING = '''
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast
EINOPS
from .configuration_llada import LLaDAConfig


class RMSLayerNorm(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.eps = config.rms_norm_eps
        self.weight = nn.Parameter(torch.ones(config.d_model))

    def forward(self, x):
        og_dtype = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(og_dtype)


class RotaryEmbedding(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config

    def sin_cos(self, length, device):
        dim = self.config.d_model // self.config.n_heads
        inv_freq = 1.0 / (self.config.rope_theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float) / dim))
        freqs = torch.einsum("i , j -> i j", torch.arange(length, device=device, dtype=torch.float), inv_freq)
        positions = torch.cat((freqs, freqs), dim=-1)
        return positions.sin()[None, None], positions.cos()[None, None]

    def rotate_half(self, x):
        b, nh, t, hs = x.size()
        x1, x2 = x.view(b, nh, t, 2, hs // 2).unbind(dim=-2)
        return torch.cat((-x2, x1), dim=-1)

    def forward(self, q, k):
        q_, k_ = (q.float(), k.float()) if self.config.rope_full_precision else (q, k)
        sin, cos = self.sin_cos(k_.shape[-2], q_.device)
        sin, cos = sin.type_as(q_), cos.type_as(q_)
        q_ = q_ * cos + self.rotate_half(q_) * sin
        k_ = k_ * cos + self.rotate_half(k_) * sin
        return q_.type_as(q), k_.type_as(k)


class LLaDALlamaBlock(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        d, heads, kv = config.d_model, config.n_heads, config.effective_n_kv_heads
        hidden = config.mlp_hidden_size or config.mlp_ratio * d
        qkv_bias = config.include_bias or config.include_qkv_bias
        self.attn_norm, self.ff_norm = RMSLayerNorm(config), RMSLayerNorm(config)
        self.q_proj = nn.Linear(d, d, bias=qkv_bias)
        self.k_proj = nn.Linear(d, kv * (d // heads), bias=qkv_bias)
        self.v_proj = nn.Linear(d, kv * (d // heads), bias=qkv_bias)
        self.attn_out = nn.Linear(d, d, bias=config.include_bias)
        self.ff_proj = nn.Linear(d, hidden, bias=config.include_bias)
        self.up_proj = nn.Linear(d, hidden, bias=config.include_bias)
        self.ff_out = nn.Linear(hidden, d, bias=config.include_bias)
        self.act = nn.SiLU()
        self.rotary_emb = RotaryEmbedding(config)

    def attention(self, q, k, v):
        b, t, c = q.shape
        heads, kv = self.config.n_heads, self.config.effective_n_kv_heads
        q = q.view(b, t, heads, c // heads).transpose(1, 2)
        k = k.view(b, t, kv, c // heads).transpose(1, 2)
        v = v.view(b, t, kv, c // heads).transpose(1, 2)
        q, k = self.rotary_emb(q, k)
        if kv != heads:
            k = k.repeat_interleave(heads // kv, dim=1)
            v = v.repeat_interleave(heads // kv, dim=1)
        # As published: bidirectional, and no attention mask whatever the caller passed.
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        return self.attn_out(att.transpose(1, 2).contiguous().view(b, t, c))

    def forward(self, x):
        h = self.attn_norm(x)
        x = x + self.attention(self.q_proj(h), self.k_proj(h), self.v_proj(h))
        h = self.ff_norm(x)
        return x + self.ff_out(self.act(self.ff_proj(h)) * self.up_proj(h))


class LLaDAModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        rows = config.embedding_size or config.vocab_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(rows, config.d_model), ln_f=RMSLayerNorm(config),
            blocks=nn.ModuleList(LLaDALlamaBlock(config) for _ in range(config.n_layers))))
        if not config.weight_tying:
            self.transformer.update({"ff_out": nn.Linear(config.d_model, rows, bias=config.include_bias)})

    def forward(self, input_ids=None, input_embeddings=None, attention_mask=None):
        x = self.transformer.wte(input_ids) if input_embeddings is None else input_embeddings
        for block in self.transformer.blocks:  # attention_mask is accepted and not used (as published)
            x = block(x)
        x = self.transformer.ln_f(x)
        if self.config.weight_tying:
            return F.linear(x, self.transformer.wte.weight, None)
        return self.transformer.ff_out(x)


class LLaDAModelLM(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"
    _no_split_modules = ["LLaDALlamaBlock"]

    def __init__(self, config, model=None, init_params=False):
        super().__init__(config)
        self.model = model or LLaDAModel(config)
        # (no self.post_init(): the published file does not call it)

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, attention_bias=None,
                past_key_values=None, labels=None, use_cache=None, output_attentions=None,
                output_hidden_states=None, return_dict=None):
        logits = self.model(input_ids=input_ids, input_embeddings=inputs_embeds, attention_mask=attention_mask)
        return CausalLMOutputWithPast(logits=logits)

    def get_input_embeddings(self):
        return self.model.transformer.wte

    def set_input_embeddings(self, value):
        self.model.transformer.wte = value

    def get_output_embeddings(self):
        return self.model.transformer.wte if self.config.weight_tying else self.model.transformer.ff_out

    def set_output_embeddings(self, value):
        if self.config.weight_tying:
            self.model.transformer.wte = value
        else:
            self.model.transformer.ff_out = value

    def tie_weights(self):  # transformers 4's signature
        if self.config.weight_tying:
            self.model.transformer.ff_out = self.model.transformer.wte
'''

SPECIALS = ["<|pad|>", "<|unk|>", "<|bos|>", "<|endoftext|>", "<|mdm_mask|>"]
PAD, UNK, BOS, EOS, MASK = range(5)
WORDS = [f"w{i}" for i in range(35)]  # the tokenizer knows 40 ids; the embedding table has 48 rows
CHAT_TEMPLATE = ("{% for m in messages %}<|bos|> {{ m['content'] }} <|endoftext|> {% endfor %}"
                 "{% if add_generation_prompt %}<|bos|>{% endif %}")


def tokenizer(chat_template: bool = True) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|pad|>", unk_token="<|unk|>",
                                  bos_token="<|bos|>", eos_token="<|endoftext|>", mask_token="<|mdm_mask|>")
    if chat_template:
        tok.chat_template = CHAT_TEMPLATE
    return tok


def _module(folder: Path, name: str):
    """Import the folder's file as its author would (package-relative import of the configuration)."""
    package = f"llada_like_{abs(hash(str(folder))):x}"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(package, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        sys.modules[package] = importlib.util.module_from_spec(spec)
    return importlib.import_module(f"{package}.{name}")


def write_llada(folder: Path, *, seed: int = 0, einops: bool = False, mask_token_id: int | None = MASK,
                **config) -> Path:
    """A LLaDA-like folder (config.json with auto_map, the two Python files, model.safetensors, tokenizer).

    The weights are built with the folder's own classes and saved with safetensors directly (the published
    class cannot `save_pretrained` under transformers 5 without the loader's compatibility shim)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "configuration_llada.py").write_text(CONFIGURATION)
    (folder / "modeling_llada.py").write_text(MODELLING.replace("EINOPS", ""))
    fields = dict(vocab_size=48, eos_token_id=EOS, pad_token_id=PAD, mask_token_id=mask_token_id, **config)
    conf = _module(folder, "configuration_llada").LLaDAConfig(**fields)
    torch.manual_seed(seed)
    body = _module(folder, "modeling_llada").LLaDAModel(conf)
    with torch.no_grad():  # weights of a trained model's scale: logits that are neither flat nor one-hot
        for name, param in body.named_parameters():
            if name.endswith("norm.weight") or name.endswith("ln_f.weight"):
                param.uniform_(0.8, 1.2)
            else:
                param.normal_(0.0, 0.3 if "wte" in name else 0.15)
    state = {f"model.{k}": v.contiguous() for k, v in body.state_dict().items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    raw = conf.to_dict()
    raw.update(architectures=["LLaDAModelLM"], auto_map={"AutoConfig": "configuration_llada.LLaDAConfig",
                                                         "AutoModel": "modeling_llada.LLaDAModelLM"})
    (folder / "config.json").write_text(json.dumps(raw, indent=1))
    (folder / "__init__.py").unlink()  # a downloaded folder has none
    if einops:  # written after the weights are built: they need no einops, loading the folder does
        (folder / "modeling_llada.py").write_text(MODELLING.replace("EINOPS", "from einops import rearrange"))
    tokenizer().save_pretrained(folder)
    return folder
