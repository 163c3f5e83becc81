"""A remote-code model folder that behaves like Dream's published modelling files (a fake written for the tests).

Written here from the structure of the public files (`configuration_dream.py`, `modeling_dream.py`,
`generation_utils.py` of Dream's model folder, as NVlabs/Fast-dLLM ships them under `dream/model/`), not copied
from them: the same config fields and defaults, module and tensor names (`model.layers.i.self_attn.q_proj`,
`lm_head`...), and the same behaviour where it matters to the workbench:
- the rotary embedding looks up `ROPE_INIT_FUNCTIONS[rope_type]` with rope_type "default", imported from
  `transformers.modeling_rope_utils` at the top of the file: transformers 5 removed that entry (KeyError);
- `DreamPreTrainedModel.from_pretrained` is overridden: it calls transformers' `from_pretrained` and then sets
  `generation_config` on whatever that returned (a tuple when `output_loading_info=True`), built by
  `DreamGenerationConfig.from_pretrained(path)`;
- `DreamGenerationConfig.validate(self, is_init=False)` takes no other argument, while transformers 5's
  `GenerationConfig.update` (which `from_pretrained` calls) passes `user_set_attributes=`;
- RoPE's `inv_freq` is a non-persistent buffer computed in `__init__`, and `_init_weights` initialises only
  Linear and Embedding modules: transformers 5 builds the model on the meta device and materialises that
  buffer with `torch.empty`, so a plain load runs with uninitialised frequencies;
- the logits are shifted (AR-initialised from Qwen2.5): logits[i] predicts token i + 1; Dream's sampler
  realigns them with `cat([logits[:, :1], logits[:, :-1]], 1)`;
- Qwen2-style layers: q/k/v projections with biases, grouped-query attention, RMSNorm, SwiGLU, RoPE in
  float32; bidirectional attention taking a (N, 1, L, L) bool mask (or the string "full", or None);
  `position_ids` honoured, counted from 0 when absent;
- config.json carries Dream's fields (`mask_token_id`, `pad_token_id` = `eos_token_id` = `bos_token_id`,
  `rope_theta`, `max_window_layers`, `use_sliding_window`...), `model_type` "Dream" and `architectures`
  ["DreamModel"], with `auto_map` naming AutoConfig and AutoModel.

`write_dream(folder)` writes config.json, generation_config.json, the three Python files, model.safetensors and
a small word-level tokenizer; the weights are written with safetensors directly, by name and shape, so no
transformers version has to build the published class to make them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CONFIGURATION = '''
from transformers.configuration_utils import PretrainedConfig
from transformers.modeling_rope_utils import rope_config_validation


class DreamConfig(PretrainedConfig):
    model_type = "Dream"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(self, vocab_size=151936, hidden_size=4096, intermediate_size=22016, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, hidden_act="silu", max_position_embeddings=32768,
                 initializer_range=0.02, rms_norm_eps=1e-6, use_cache=False, tie_word_embeddings=False,
                 rope_theta=10000.0, rope_scaling=None, use_sliding_window=False, sliding_window=4096,
                 max_window_layers=28, attention_dropout=0.0, mask_token_id=151666, pad_token_id=151643,
                 **kwargs):
        self.vocab_size, self.hidden_size, self.intermediate_size = vocab_size, hidden_size, intermediate_size
        self.num_hidden_layers, self.num_attention_heads = num_hidden_layers, num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.hidden_act, self.max_position_embeddings = hidden_act, max_position_embeddings
        self.initializer_range, self.rms_norm_eps, self.use_cache = initializer_range, rms_norm_eps, use_cache
        self.rope_theta, self.rope_scaling = rope_theta, rope_scaling
        self.use_sliding_window, self.max_window_layers = use_sliding_window, max_window_layers
        self.sliding_window = sliding_window if use_sliding_window else None
        self.attention_dropout = attention_dropout
        if self.rope_scaling is not None and "type" in self.rope_scaling:
            self.rope_scaling["rope_type"] = self.rope_scaling["type"]
        rope_config_validation(self)
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.mask_token_id, self.pad_token_id = mask_token_id, pad_token_id
'''

GENERATION = '''
from transformers import __version__
from transformers.generation.configuration_utils import GenerationConfig


class DreamGenerationConfig(GenerationConfig):
    def __init__(self, **kwargs):
        self.temperature = kwargs.pop("temperature", 0.0)
        self.top_p = kwargs.pop("top_p", None)
        self.top_k = kwargs.pop("top_k", None)
        self.max_length = kwargs.pop("max_length", 20)
        self.max_new_tokens = kwargs.pop("max_new_tokens", None)
        self.eps = kwargs.pop("eps", 1e-3)
        self.steps = kwargs.pop("steps", 512)
        self.alg = kwargs.pop("alg", "origin")
        self.alg_temp = kwargs.pop("alg_temp", None)
        self.num_return_sequences = kwargs.pop("num_return_sequences", 1)
        self.return_dict_in_generate = kwargs.pop("return_dict_in_generate", False)
        self.output_history = kwargs.pop("output_history", False)
        for name in ("mask_token_id", "pad_token_id", "bos_token_id", "eos_token_id"):
            setattr(self, name, kwargs.pop(name, None))
        self.generation_kwargs = kwargs.pop("generation_kwargs", {})
        self._from_model_config = kwargs.pop("_from_model_config", False)
        self._commit_hash = kwargs.pop("_commit_hash", None)
        self.transformers_version = kwargs.pop("transformers_version", __version__)
        if not self._from_model_config:
            for key, value in kwargs.items():
                setattr(self, key, value)
        self.validate(is_init=True)

    def validate(self, is_init=False):  # as published: no other argument
        pass


class DreamGenerationMixin:
    """The published mixin holds `diffusion_generate`; the workbench never calls it."""
'''

MODELLING = '''
import os

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.modeling_outputs import MaskedLMOutput
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.modeling_utils import PreTrainedModel

from .configuration_dream import DreamConfig
from .generation_utils import DreamGenerationConfig, DreamGenerationMixin


class DreamRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        dtype = hidden_states.dtype
        h = hidden_states.to(torch.float32)
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * h.to(dtype)


class DreamRotaryEmbedding(nn.Module):
    def __init__(self, config, device=None):
        super().__init__()
        scaling = config.rope_scaling
        self.rope_type = scaling.get("rope_type", scaling.get("type")) if scaling is not None else "default"
        self.rope_kwargs = {}
        self.config = config
        self.rope_init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]  # transformers 5 has no "default" entry
        inv_freq, self.attention_scaling = self.rope_init_fn(self.config, device, **self.rope_kwargs)
        # Non-persistent and set only here: transformers 5 builds the model on the meta device and leaves it to
        # _init_weights, which (below, as published) only initialises Linear and Embedding.
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.original_inv_freq = self.inv_freq

    def reset_parameters(self):
        inv_freq, self.attention_scaling = self.rope_init_fn(self.config, self.inv_freq.device, **self.rope_kwargs)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.original_inv_freq = self.inv_freq

    @torch.no_grad()
    def forward(self, x, position_ids):
        freqs = (self.inv_freq[None, :, None].float() @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class DreamMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class DreamSdpaAttention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.num_heads, self.num_key_value_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.hidden_size // self.num_heads
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(config.hidden_size, self.num_key_value_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None):
        bsz, length, _ = hidden_states.shape
        q = self.q_proj(hidden_states).view(bsz, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, length, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, length, self.num_key_value_heads, self.head_dim).transpose(1, 2)
        cos, sin = (t.unsqueeze(1) for t in position_embeddings)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        groups = self.num_heads // self.num_key_value_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        mask = attention_mask if isinstance(attention_mask, torch.Tensor) else None  # "full": no mask
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=False)
        return self.o_proj(out.transpose(1, 2).reshape(bsz, length, -1))


class DreamDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.self_attn = DreamSdpaAttention(config, layer_idx)
        self.mlp = DreamMLP(config)
        self.input_layernorm = DreamRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = DreamRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, attention_mask=None, position_embeddings=None):
        h = hidden_states + self.self_attn(self.input_layernorm(hidden_states), attention_mask, position_embeddings)
        return h + self.mlp(self.post_attention_layernorm(h))


class DreamPreTrainedModel(PreTrainedModel):
    config_class = DreamConfig
    base_model_prefix = "model"
    _no_split_modules = ["DreamDecoderLayer"]
    _supports_sdpa = True

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, local_files_only=False, **kwargs):
        _model = super().from_pretrained(pretrained_model_name_or_path, *model_args,
                                         local_files_only=local_files_only, **kwargs)
        # As published: the generation config loaded by from_pretrained lacks Dream's fields, so it is replaced;
        # set on whatever super() returned (a tuple with output_loading_info=True).
        _model.generation_config = DreamGenerationConfig.from_pretrained(
            pretrained_model_name_or_path, local_files_only=local_files_only)
        return _model


class DreamBaseModel(DreamPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(DreamDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = DreamRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = DreamRotaryEmbedding(config=config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        if position_ids is None:
            position_ids = torch.arange(h.shape[1], device=h.device)[None]
        position_embeddings = self.rotary_emb(h, position_ids)
        for layer in self.layers:
            h = layer(h, attention_mask, position_embeddings)
        return self.norm(h)


class DreamModel(DreamGenerationMixin, DreamPreTrainedModel):
    _tied_weights_keys = ["lm_head.weight"]

    def __init__(self, config):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None, num_logits_to_keep=0, **loss_kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            inputs_embeds=inputs_embeds)
        return MaskedLMOutput(logits=self.lm_head(hidden))  # shifted: logits[:, i] predicts token i + 1
'''

SPECIALS = ["<|endoftext|>", "<|unk|>", "<|mask|>", "<|im_start|>", "<|im_end|>"]
EOS, UNK, MASK, IM_START, IM_END = range(5)
PAD = BOS = EOS  # Dream pads with <|endoftext|> and starts with it (config: pad = bos = eos = 151643)
VOCAB = 48
WORDS = [f"w{i}" for i in range(VOCAB - len(SPECIALS))]
SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, rope_theta=10000.0)
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['content'] }} <|im_end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>{% endif %}")


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<|unk|>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", unk_token="<|unk|>", mask_token="<|mask|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def weights(seed: int = 0, **config) -> dict[str, torch.Tensor]:
    """Every tensor DreamModel declares, by name and shape, at a trained model's scale (logits neither flat
    nor one-hot): RMSNorm weights 1, small biases."""
    c = {**SMALL, **config}
    d, heads, kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    head_dim, ff, vocab = d // heads, c["intermediate_size"], c["vocab_size"]
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape, std=0.3):
        return (torch.randn(*shape, generator=gen) * std).contiguous()

    state = {"model.embed_tokens.weight": normal(vocab, d, std=1.0), "model.norm.weight": torch.ones(d),
             "lm_head.weight": normal(vocab, d, std=0.5)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        for name, rows in (("q", heads), ("k", kv), ("v", kv)):
            state[p + f"self_attn.{name}_proj.weight"] = normal(rows * head_dim, d)
            state[p + f"self_attn.{name}_proj.bias"] = normal(rows * head_dim, std=0.05)
        state[p + "self_attn.o_proj.weight"] = normal(d, heads * head_dim)
        state[p + "mlp.gate_proj.weight"], state[p + "mlp.up_proj.weight"] = normal(ff, d), normal(ff, d)
        state[p + "mlp.down_proj.weight"] = normal(d, ff)
        state[p + "input_layernorm.weight"] = torch.ones(d)
        state[p + "post_attention_layernorm.weight"] = torch.ones(d)
    return state


def config_json(**config) -> dict:
    """config.json as Dream's folders write it (field names of Dream-v0-Instruct-7B, sizes of SMALL)."""
    return {"architectures": ["DreamModel"], "attention_dropout": 0.0,
            "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
            "bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD, "mask_token_id": MASK,
            "hidden_act": "silu", "initializer_range": 0.02, "max_window_layers": SMALL["num_hidden_layers"],
            "model_type": "Dream", "rms_norm_eps": 1e-6, "rope_scaling": None, "sliding_window": None,
            "tie_word_embeddings": False, "torch_dtype": "float32", "transformers_version": "4.46.2",
            "use_cache": False, "use_sliding_window": False, **SMALL, **config}


def generation_config_json() -> dict:
    """generation_config.json as Dream-v0-Instruct-7B ships it (its special ids in the tiny vocabulary)."""
    return {"_from_model_config": True, "alg": "origin", "alg_temp": None, "bos_token_id": BOS,
            "eos_token_id": EOS, "eps": 0.001, "mask_token_id": None, "output_history": False, "pad_token_id": PAD,
            "steps": 512, "temperature": 0.0, "top_k": None, "top_p": None, "transformers_version": "4.46.2"}


def write_dream(folder: Path, *, seed: int = 0, generation_config: bool = True, **config) -> Path:
    """A Dream-like folder: config.json (with auto_map), generation_config.json, configuration_dream.py,
    modeling_dream.py, generation_utils.py, model.safetensors and the tokenizer. `config` overrides fields of
    config.json (and the weights' shapes follow them)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    (folder / "configuration_dream.py").write_text(CONFIGURATION)
    (folder / "generation_utils.py").write_text(GENERATION)
    (folder / "modeling_dream.py").write_text(MODELLING)
    (folder / "config.json").write_text(json.dumps(config_json(**config), indent=1))
    if generation_config:
        (folder / "generation_config.json").write_text(json.dumps(generation_config_json(), indent=1))
    shapes = {k: v for k, v in config.items() if k in SMALL}
    save_file(weights(seed, **shapes), folder / "model.safetensors", metadata={"format": "pt"})
    tok = tokenizer()
    tok.save_pretrained(folder)
    # transformers 5 names its own class (TokenizersBackend), which transformers 4 cannot import
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=1))
    return folder
