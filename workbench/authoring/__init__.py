"""Authoring: what a plugin author uses besides the public API. `scaffold` writes a new plugin and its test
(`workbench new-plugin`), `checker` runs a plugin against the decoding invariants (`workbench
check-plugin`), `properties` holds those invariants (hypothesis) and the block-state builders tests use.

May import: `workbench.decoding`, `workbench.models`.
"""
