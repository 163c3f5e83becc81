"""transformers' DiffusionGemma (`DiffusionGemmaForBlockDiffusion`) as a uniform-state `Denoiser`.

DiffusionGemma is a block-diffusion encoder-decoder: the prompt and every committed canvas (block) go through
the causal encoder once, into its key/value cache; each denoising step runs the bidirectional decoder on the
canvas only, reading that cache, with the previous step's logits fed back as self-conditioning. It has no
mask token: a canvas starts as uniformly random tokens and open positions are renoised with random tokens
(uniform-state diffusion). So the adapter declares `noise = "uniform"`, `self_conditioning = True`,
`mask_id = None`, and brings its own runner (`DiffusionGemmaRunner`) in place of the canvas runners.

Differences from `DiffusionGemmaForBlockDiffusion.generate`, all deliberate:
- Position ids skip left padding (a padded row computes what it computes alone); `generate` counts the
  padding, so with prompts of different lengths its batched rows differ from the rows alone.
- The decoder forward is the model's own, with the canvas's input embeddings given instead of looked up
  (`_GivenEmbeddings`), so strategies that feed soft inputs can run; for hard inputs it is the same forward.
- `nfe` counts decoder forwards (what `generate`'s tokens-per-forward divides by); the encoder forwards (the
  prefill and one per committed canvas) count in `nfe_total`.
Nothing is fetched: the folder must hold config.json, every weight (a missing tensor is refused, naming it)
and a tokenizer.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from workbench.models.masks import position_ids_from_valid
from workbench.models.base import ModelInputsDenied

MODEL_TYPE = "diffusion_gemma"
# `generate`'s own defaults for settings a checkpoint's generation_config.json leaves unset
# (DiffusionGemmaGenerationConfig._get_default_generation_params).
GENERATION_SETTINGS = ("max_denoising_steps", "t_min", "t_max", "stability_threshold", "confidence_threshold")


class _GivenEmbeddings(nn.Module):
    """Stands in for the decoder's scaled word embedding for one forward: returns the given (already scaled)
    inputs, and exposes the real table's `weight` / `embed_scale`, which self-conditioning reads."""

    def __init__(self, real: nn.Module, inputs: torch.Tensor):
        super().__init__()
        self.real = real
        self.inputs = inputs

    @property
    def weight(self) -> torch.Tensor:
        return self.real.weight

    @property
    def embed_scale(self) -> torch.Tensor:
        return self.real.embed_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.inputs


class DiffusionGemmaDenoiser(nn.Module):
    """A `DiffusionGemmaForBlockDiffusion` behind the `Denoiser` protocol (see the module docstring)."""

    noise = "uniform"
    self_conditioning = True
    block_causal = True  # a canvas sees the encoded context and itself, never later canvases
    mask_id = None

    def __init__(self, model: nn.Module, folder: Path | str = "model"):
        super().__init__()
        self.model = model
        self.folder = Path(folder)
        text = model.config.text_config
        self.vocab_size = int(text.vocab_size)
        # generate stops a row at any of the generation config's EOS ids (a list in released checkpoints)
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos = text.eos_token_id if eos is None else eos
        self.eos_ids = tuple(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]))
        self.eos_id = self.eos_ids[0]
        self.pad_id = int(text.pad_token_id if text.pad_token_id is not None else self.eos_id)
        self.canvas_length = int(model.config.canvas_length)
        self.max_positions = int(getattr(text, "max_position_embeddings", 0)) or None
        self._experts = model.config._experts_implementation  # as loaded (grouped_mm), restored off float64
        self._fit_experts()

    def _apply(self, fn, recurse=True):
        """`.to()`, `.double()`, `.float()` ... then `_fit_experts` for the new dtype."""
        out = super()._apply(fn, recurse)
        self._fit_experts()
        return out

    def _fit_experts(self) -> None:
        """torch's grouped matrix product, transformers' default for the MoE feed-forward, has no float64 kernel
        (`Expected mat_a to be Float32, BFloat16 or Float16`): in float64 the experts run transformers' own
        `eager` loop (the same function, one expert at a time); back in another dtype, the loaded one."""
        want = "eager" if self.model.dtype == torch.float64 else self._experts
        if self.model.config._experts_implementation != want:
            self.model.set_experts_implementation(want)

    # -- Denoiser protocol --------------------------------------------------------------------------
    def embedding_table(self) -> torch.Tensor:
        return self.model.model.decoder.embed_tokens.weight  # (V, D) unscaled; tied with the encoder's

    def mask_embedding(self) -> torch.Tensor:
        raise ModelInputsDenied(f"{self.folder}: DiffusionGemma is a uniform-state model and has no mask token, so "
                                f"there is no mask embedding; decode it uniform-state (the default) with a "
                                f"strategy that does not need e_mask")

    def denoise(self, inputs_embeds, *, block_ids, valid):
        raise NotImplementedError("DiffusionGemma decodes through its own runner (encoder cache + decoder); "
                                  "use workbench.decoding.cache.make_runner(model)")

    def make_runner(self, cache: str = "auto") -> DiffusionGemmaRunner:
        """The encoder-cache runner for every cache mode that is exact; `none` (recompute the context every
        step) is refused: the encoder cache is how this architecture reads its context."""
        if cache == "none":
            raise ModelInputsDenied(f"{self.folder}: --cache none is not available for DiffusionGemma, whose decoder "
                                    f"reads the context from the encoder's key/value cache by design; use --cache "
                                    f"auto (the exact encoder cache; prefix and dual mean the same here)")
        return DiffusionGemmaRunner(self)

    def noise_range(self) -> tuple[int, int]:
        return 0, self.vocab_size  # `generate` draws canvases from the whole vocabulary

    # -- facts for strategies and the CLI -----------------------------------------------------------
    def generation_defaults(self) -> dict:
        """`generate`'s settings for this checkpoint: generation_config.json, else `generate`'s defaults."""
        from transformers.models.diffusion_gemma.generation_diffusion_gemma import DiffusionGemmaGenerationConfig

        defaults = DiffusionGemmaGenerationConfig._get_default_generation_params()
        config = self.model.generation_config
        out = {key: getattr(config, key, None) if getattr(config, key, None) is not None else defaults[key]
               for key in GENERATION_SETTINGS}
        sampler = getattr(config, "sampler_config", None) or defaults["sampler_config"]
        out["entropy_bound"] = float(sampler.entropy_bound)
        return out

    def decode_defaults(self) -> dict:
        """How `generate` decodes, as DecodeConfig fields: block size = the canvas length, forward cap =
        `max_denoising_steps`, and whole canvases only (`last_block="full"`: a `max_new_tokens` that is not a
        multiple of the canvas still denoises a whole last canvas, and the output is cut afterwards)."""
        return {"block_size": self.canvas_length,
                "max_forwards_per_block": int(self.generation_defaults()["max_denoising_steps"]),
                "last_block": "full"}

    # -- forwards ------------------------------------------------------------------------------------
    def encode(self, ids: torch.Tensor, attention: torch.Tensor, positions: torch.Tensor, cache) -> None:
        """Run the encoder on `ids` (b, n), the not-yet-encoded context, writing its keys/values into `cache`.
        attention: (b, total) bool over everything encoded so far plus `ids`; positions: (b, n)."""
        encoder = self.model.model.encoder
        dummy = torch.empty((ids.shape[0], ids.shape[1], 0), dtype=self.model.dtype, device=ids.device)
        masks = encoder.create_masks_for_generate(config=self.model.config, inputs_embeds=dummy,
                                                  attention_mask=attention, cache=cache, position_ids=positions)
        encoder(input_ids=ids, attention_mask=masks, cache=cache, position_ids=positions)

    def decoder_masks(self, attention: torch.Tensor, cache, length: int) -> dict:
        """The decoder's attention masks for a canvas of `length` over `cache` (as `generate` builds them)."""
        decoder = self.model.model.decoder
        dummy = torch.empty((attention.shape[0], length, 1), dtype=self.model.dtype, device=attention.device)
        return decoder.create_diffusion_decoder_attention_mask(config=self.model.config, inputs_embeds=dummy,
                                                               cache=cache, decoder_attention_mask=attention)

    def decode(self, embeds: torch.Tensor, *, cache, masks: dict, positions: torch.Tensor,
               self_conditioning: torch.Tensor | None, self_conditioning_mask: torch.Tensor | None = None
               ) -> torch.Tensor:
        """Logits (b, L, V) float32 of a canvas whose input embeddings (unscaled table rows, or mixtures of
        them) are `embeds` (b, L, D): the model's own decoder forward, LM head and soft-capping.
        `self_conditioning_mask` (b,) bool zeroes the signal of the rows set False (training)."""
        decoder = self.model.model.decoder
        real = decoder.embed_tokens
        scaled = embeds * real.embed_scale.to(real.weight.dtype)  # what the real embedding returns for ids
        sc = None if self_conditioning is None else self_conditioning.to(real.weight.dtype)
        dummy_ids = torch.zeros(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        decoder.embed_tokens = _GivenEmbeddings(real, scaled)
        try:
            out = self.model(decoder_input_ids=dummy_ids, cache=cache, self_conditioning_logits=sc,
                             self_conditioning_mask=self_conditioning_mask, decoder_attention_mask=masks,
                             decoder_position_ids=positions)
        finally:
            decoder.embed_tokens = real
        return out.logits


    # -- training (`workbench train --init FOLDER`) ------------------------------------------------------
    def training_logits(self, prompt: torch.Tensor, prompt_valid: torch.Tensor, noisy: torch.Tensor,
                        clean: torch.Tensor, block_size: int) -> torch.Tensor:
        """Logits (N, R, V) of the noisy response in DiffusionGemma's decoding layout (`trainers.base`).

        Exactly as decoding runs: the encoder encodes the prompt, then for each block k the decoder denoises
        noisy block k against the cache (prompt and clean blocks < k) and the encoder appends clean block k
        (block by block, so the sliding-window layers keep what decoding keeps). Self-conditioning is trained
        as the decoder's `self_conditioning_mask` intends: every other example gets the first pass's logits
        (detached) as its signal, the others none, so both uses are learnt (no random draw: ranks stay in
        lockstep).
        """
        from transformers import DynamicCache

        n, p = prompt.shape
        r, device = noisy.shape[1], prompt.device
        valid = torch.cat([prompt_valid, torch.ones(n, r, dtype=torch.bool, device=device)], dim=1)
        positions = position_ids_from_valid(valid)  # (N, P + R)
        cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        self.encode(prompt, valid[:, :p], positions[:, :p], cache)
        table = self.embedding_table()
        with_signal = torch.arange(n, device=device) % 2 == 0  # (N,)
        out = []
        for lo in range(0, r, block_size):
            hi = min(lo + block_size, r)
            masks = self.decoder_masks(valid[:, :p + hi], cache, hi - lo)
            embeds, pos = table[noisy[:, lo:hi]], positions[:, p + lo:p + hi]
            with torch.no_grad():
                first = self.decode(embeds, cache=cache, masks=masks, positions=pos, self_conditioning=None)
            out.append(self.decode(embeds, cache=cache, masks=masks, positions=pos, self_conditioning=first,
                                   self_conditioning_mask=with_signal))
            if hi < r:
                self.encode(clean[:, lo:hi], valid[:, :p + hi], positions[:, p + lo:p + hi], cache)
        return torch.cat(out, dim=1)

    def save_pretrained(self, path) -> None:
        self.model.save_pretrained(path)

    def num_parameters_millions(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e6


class DiffusionGemmaRunner:
    """Forwards of one `generate` call on DiffusionGemma: at each block start the encoder encodes the context
    not yet in the cache (the prompt, then each committed canvas); each step runs the decoder on the canvas.

    Rows that finish within a block are not forwarded (the cache of the running rows is gathered once per
    change of the running set); rows that produced EOS are dropped from the cache at the block's end.
    """

    mode = "prefix"
    separate_prefill = True  # the encoder forward of the prompt is a forward of its own, counted in nfe_total

    def __init__(self, model: DiffusionGemmaDenoiser):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.cache = None
        self.encoded = 0  # canvas positions [0, encoded) are in the encoder cache
        self._subset = None

    def start_block(self, ids: torch.Tensor, valid: torch.Tensor, block_ids: torch.Tensor, lo: int, hi: int) -> int:
        from transformers import DynamicCache

        if self.cache is None:
            self.cache = DynamicCache(config=self.model.model.config.get_text_config(decoder=True))
            self.rows = ids.shape[0]
        elif self.rows != ids.shape[0]:
            raise RuntimeError(f"cache holds {self.rows} rows, block has {ids.shape[0]}: call end_block(keep)")
        positions = position_ids_from_valid(valid)  # (b, T): skip left padding
        self.model.encode(ids[:, self.encoded:lo], valid[:, :lo], positions[:, self.encoded:lo], self.cache)
        self.encoded, self._subset = lo, None
        self.positions = positions[:, lo:hi]  # (b, L) canvas positions continue after the context
        self.masks = self.model.decoder_masks(valid[:, :hi], self.cache, hi - lo)
        return 1  # one encoder forward

    def _rows(self, running: torch.Tensor, n: int):
        """(cache, masks, positions) of the n running rows; reused while the running set is unchanged."""
        if n == running.shape[0]:
            return self.cache, self.masks, self.positions
        if self._subset is None or self._subset[0] != n:
            import copy

            index = running.nonzero().flatten()
            cache = copy.deepcopy(self.cache)
            cache.batch_select_indices(index)
            masks = {k: None if m is None else m[index] for k, m in self.masks.items()}
            self._subset = (n, cache, masks, self.positions[index])
        return self._subset[1:]

    def forward(self, block_embeds: torch.Tensor, running: torch.Tensor, *,
                self_conditioning: torch.Tensor | None = None) -> torch.Tensor:
        cache, masks, positions = self._rows(running, block_embeds.shape[0])
        return self.model.decode(block_embeds, cache=cache, masks=masks, positions=positions,
                                 self_conditioning=self_conditioning)

    def end_block(self, keep: torch.Tensor) -> None:
        self._subset = None
        if not bool(keep.all()):
            self.cache.batch_select_indices(keep.nonzero().flatten().to(self.positions.device))
            self.rows = int(keep.sum())


# Files a DiffusionGemma folder's tokenizer is read from (a fast tokenizer, or SentencePiece's model).
# Without either, `AutoTokenizer` builds Gemma's tokenizer from nothing (5 special tokens) and encodes every
# prompt to one id without a word: such a folder is refused instead.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def load_diffusion_gemma_tokenizer(folder: str | Path):
    """The tokenizer saved in the DiffusionGemma folder; ModelLoadError when it holds none (see TOKENIZER_FILES)."""
    import transformers

    from workbench.models.folders import ModelLoadError

    folder = Path(folder)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{folder} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}), so every prompt would "
                             f"be encoded with an empty default tokenizer; copy the tokenizer files from where the "
                             f"checkpoint came from into the folder (or save one there with "
                             f"tokenizer.save_pretrained)")
    try:
        return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # tokenizers/transformers raise several types for a damaged file
        raise ModelLoadError(f"{folder}: its tokenizer cannot be read ({type(err).__name__}: {err}); copy the "
                             f"tokenizer files again") from None


def load_diffusion_gemma(folder: str | Path, *, dtype: torch.dtype | None = None):
    """(DiffusionGemmaDenoiser, tokenizer) from a local DiffusionGemma folder; nothing is fetched.

    A weight the checkpoint lacks (or holds in another shape) is refused naming it (`from_pretrained_strict`),
    as is a folder without a tokenizer (`load_diffusion_gemma_tokenizer`)."""
    import transformers

    from workbench.models.folders import from_pretrained_strict

    folder = Path(folder)
    tokenizer = load_diffusion_gemma_tokenizer(folder)  # first: it costs nothing when it is missing
    model = from_pretrained_strict(transformers.DiffusionGemmaForBlockDiffusion, folder, dtype=dtype)
    return DiffusionGemmaDenoiser(model.eval(), folder).eval(), tokenizer


def build_random_diffusion_gemma(vocab_size: int = 128, *, canvas_length: int = 8, hidden_size: int = 32,
                                 layers: int = 2, seed: int = 0, eos_token_id: int = 2, pad_token_id: int = 0,
                                 bos_token_id: int = 3):
    """A tiny random-weight `DiffusionGemmaForBlockDiffusion` built from a config (tests, benchmarks): the
    real architecture (sliding and full attention layers, the MoE feed-forward, self-conditioning, the
    smallest vision tower the config accepts), ~40k parameters at the defaults. Its generation config
    stops at `eos_token_id` and pads with `pad_token_id`, as released checkpoints' do."""
    import transformers

    text = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                global_head_dim=16, sliding_window=8, max_position_embeddings=512,
                layer_types=["sliding_attention"] * (layers - 1) + ["full_attention"], num_experts=2,
                top_k_experts=1, moe_intermediate_size=hidden_size, pad_token_id=pad_token_id,
                eos_token_id=eos_token_id, bos_token_id=bos_token_id)
    vision = dict(model_type="gemma4_vision", hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                  num_attention_heads=1, num_key_value_heads=1, head_dim=8, position_embedding_size=8,
                  patch_size=2, pooling_kernel_size=1)
    config = transformers.DiffusionGemmaConfig(text_config=text, vision_config=vision, canvas_length=canvas_length)
    torch.manual_seed(seed)
    model = transformers.DiffusionGemmaForBlockDiffusion(config).eval()
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = pad_token_id
    return model

