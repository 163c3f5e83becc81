"""The native denoiser: a small transformer (RMSNorm, RoPE, SwiGLU, SDPA) as a transformers model.

Subclassing `PreTrainedModel` gives `save_pretrained` / `from_pretrained` with safetensors for free.
The attention layout is a config choice: block-causal (LLaDA-2.0 / BD3-LM; exact prefix KV cache)
or bidirectional (LLaDA / Dream).
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from workbench.models.masks import decode_attention_mask, position_ids_from_valid


class NativeDenoiserConfig(PretrainedConfig):
    model_type = "workbench-denoiser"

    def __init__(
        self,
        vocab_size: int = 64,
        hidden_size: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        intermediate_size: int | None = None,
        rope_theta: float = 10000.0,
        rms_norm_eps: float = 1e-6,
        block_causal: bool = True,
        block_size: int = 16,
        mask_token_id: int = 1,
        eos_token_id: int = 2,
        pad_token_id: int = 0,
        initializer_range: float = 0.02,
        noise: str = "mask",
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        # SwiGLU: 8/3 * d keeps the parameter count of a 4*d GELU MLP (LLaMA's choice).
        self.intermediate_size = intermediate_size or int(8 * hidden_size / 3 / 8 + 0.999) * 8
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.block_causal = block_causal
        self.block_size = block_size
        self.mask_token_id = mask_token_id
        self.initializer_range = initializer_range
        # What open positions are fed when decoding with noise=auto: "mask" (absorbing-state, every model
        # trained with a masked copy) or "uniform" (trained only on uniform noise: decoded from random tokens).
        self.noise = noise
        super().__init__(eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32: bf16 variance is too coarse for small models.
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(dtype)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos, sin of shape (N, 1, L, head_dim) for rotary embeddings at the given positions."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=position_ids.device).float() / head_dim))
    angles = position_ids.float()[..., None] * inv_freq  # (N, L, hd/2)
    emb = torch.cat([angles, angles], dim=-1)[:, None]  # (N, 1, L, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: NativeDenoiserConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.hidden_size // cfg.num_heads
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size, bias=False)
        self.out = nn.Linear(cfg.hidden_size, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin, attn_mask, kv=None, start=0, stop=None):
        """Self-attention of x (N, L, D); with `kv` = (K, V) buffers (N, H, S, hd), x holds canvas positions
        [start, start + L): their keys/values are written there and the queries attend to [0, stop)."""
        n, length, d = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv is not None:
            kv[0][:, :, start:start + length] = k
            kv[1][:, :, start:start + length] = v
            k, v = kv[0][:, :, :stop], kv[1][:, :, :stop]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (N, H, L, hd)
        return self.out(y.transpose(1, 2).reshape(n, length, d))


class SwiGLU(nn.Module):
    def __init__(self, cfg: NativeDenoiserConfig):
        super().__init__()
        self.gate_up = nn.Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Layer(nn.Module):
    def __init__(self, cfg: NativeDenoiserConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, attn_mask, kv=None, start=0, stop=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, attn_mask, kv, start, stop)
        return x + self.mlp(self.mlp_norm(x))


class NativeDenoiser(PreTrainedModel):
    """Small masked-diffusion transformer. Implements the `Denoiser` protocol."""

    config_class = NativeDenoiserConfig
    base_model_prefix = "denoiser"
    _no_split_modules = ["Layer"]

    def __init__(self, config: NativeDenoiserConfig):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    # -- Denoiser protocol --------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def mask_id(self) -> int:
        return self.config.mask_token_id

    @property
    def eos_id(self) -> int:
        return self.config.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.config.pad_token_id

    @property
    def block_causal(self) -> bool:
        return self.config.block_causal

    @property
    def noise(self) -> str:
        return getattr(self.config, "noise", "mask")

    def noise_range(self) -> tuple[int, int]:
        """Random tokens of a uniform-state canvas: the ordinary tokens (the uniform trainer draws the same)."""
        from workbench.models.tokenizer import FIRST_ORDINARY_ID

        return FIRST_ORDINARY_ID, self.vocab_size

    def embedding_table(self) -> torch.Tensor:
        return self.embed.weight

    def mask_embedding(self) -> torch.Tensor:
        return self.embed.weight[self.mask_id]

    def denoise(self, inputs_embeds, *, block_ids, valid):
        mask = decode_attention_mask(block_ids, valid, self.block_causal)
        return self.forward(inputs_embeds=inputs_embeds, position_ids=position_ids_from_valid(valid), attn_mask=mask)

    def denoise_masked(self, inputs_embeds, *, position_ids, attn_mask):
        """Logits (N, Q, V) of a layout the canvas's block ids cannot describe (WINO's shadow block, see
        `workbench.decoding.cache`): position ids (N, Q) long and an (N, 1, Q, Q) bool mask, True = may
        attend. `denoise` is this with the canvas's own mask and positions."""
        return self.forward(inputs_embeds=inputs_embeds, position_ids=position_ids, attn_mask=attn_mask)

    def denoise_kv(self, inputs_embeds, *, position_ids, attn_mask, cache, start, stop, logits=slice(None)):
        """Forward of canvas positions [start, start + L) against a key/value cache (`workbench.decoding.cache`).

        Args:
            inputs_embeds: (N, L, D) inputs of canvas positions [start, start + L).
            position_ids: (N, L) long, their RoPE positions.
            attn_mask: (N, 1, L, stop) bool over the cache's positions [0, stop), True = may attend.
            cache: a `workbench.decoding.cache.KVCache`; this forward writes the keys/values of its positions into
                every layer's buffers at [start, start + L), then attends to the buffers' [0, stop).
            logits: which of the L positions get logits (the vocabulary projection is skipped elsewhere).

        Returns:
            (N, len(range(L)[logits]), V) logits.
        """
        x = inputs_embeds
        n = x.shape[0]
        hd = self.config.hidden_size // self.config.num_heads
        cos, sin = rope_cos_sin(position_ids, hd, self.config.rope_theta, x.dtype)
        for i, layer in enumerate(self.layers):
            kv = cache.buffers(i, n, self.config.num_heads, hd, x.dtype, x.device)
            x = layer(x, cos, sin, attn_mask, kv, start, stop)
        return self.lm_head(self.norm(x[:, logits]))

    # -- plain forward --------------------------------------------------------------------------------
    def forward(self, input_ids=None, *, inputs_embeds=None, position_ids=None, attn_mask=None):
        """Logits (N, L, V). `attn_mask`: (N, 1, L, L) bool (True = may attend), or None for full attention."""
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        n, length, _ = x.shape
        if position_ids is None:
            position_ids = torch.arange(length, device=x.device).expand(n, length)
        cos, sin = rope_cos_sin(position_ids, self.config.hidden_size // self.config.num_heads,
                                self.config.rope_theta, x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask)
        return self.lm_head(self.norm(x))

    def num_parameters_millions(self) -> float:
        return sum(p.numel() for p in self.parameters()) / 1e6


def build_random_model(vocab_size: int, *, seed: int = 0, dtype=torch.float32, **config_kwargs) -> NativeDenoiser:
    """A randomly initialised native model (tests, speed benchmarks)."""
    torch.manual_seed(seed)
    model = NativeDenoiser(NativeDenoiserConfig(vocab_size=vocab_size, **config_kwargs))
    return model.to(dtype).eval()


