"""The choices of `DecodeConfig`'s string fields, importable without torch (the command line offers them)."""

# Forward modes of `workbench.decoding.cache.make_runner`: auto = exact prefix KV cache where it is exact
# (block-causal models with a cache API), none otherwise.
CACHE_MODES = ("auto", "none", "prefix", "dual")
# What open positions are fed (`DecodeConfig.noise`): `mask` = the mask embedding (absorbing-state models),
# `uniform` = uniformly random tokens redrawn every step (uniform-state models), `auto` = the model's own kind.
NOISE_KINDS = ("auto", "mask", "uniform")
# Random draws (`DecodeConfig.rng`): `sample` = one generator per sample, seeded from (seed, sample id), so a
# sample decodes the same in any batch; `batch` = one generator per `generate` call shared by the batch
# (the draw order of transformers' DiffusionGemma `generate` and of this workbench before per-sample draws).
RNG_MODES = ("sample", "batch")
# The last block when `max_new_tokens` is not a multiple of the block size (`DecodeConfig.last_block`): `short` =
# decode only the remaining positions; `full` = decode a whole block and cut the output to `max_new_tokens`
# (transformers' DiffusionGemma `generate`, which always denoises whole canvases).
LAST_BLOCKS = ("short", "full")
