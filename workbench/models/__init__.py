"""Models: the denoisers the decoding loop drives, and how they are read from a folder.

Owns the `Denoiser` protocol (`base`), attention masks shared by decoding and training (`masks`), the native
model and its character tokenizer (`native`, `tokenizer`), transformers adapters with per-family profiles
(`adapters`, `profiles`, `conversion`), DiffusionGemma (`diffusion_gemma`), safe folder reading
(`folders`) and the loader (`loading`).

May import: third-party libraries only; the bottom of the package tree. Reading a folder (`folders`) imports
no torch, so the command line can name a bad path before anything heavy loads.
"""
