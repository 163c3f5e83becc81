"""Decoding: the block-decoding loop and the hook machinery every strategy plugs into.

Owns the loop (`loop`), the state and configuration hooks share (`state`), the hook specifications
(`hookspecs`) and their markers (`markers`), the plugin manager and the typed hook façade (`registry`), the
result checks and the state guard (`contract`), the core's default answers (`defaults`), random streams
(`rng`), forward runners with their KV caches (`cache`) and the length check (`limits`).

May import: `workbench.models` (the `Denoiser` protocol and attention masks) and third-party libraries.
Never imports strategies, plugins, results, training or the command line: it knows no strategy by name.
"""
