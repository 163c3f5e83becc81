"""Reusable building blocks of decoding strategies.

- `plugins.promotion`: promotion rules (threshold set, factor rule, span maxima, contiguous prefix), as
  plain functions of a `BlockState` and as small plugin classes implementing `promote`.
- `plugins.embedders`: input builders (mask, hard, norm-preserving hybrid of DMax Eq. 9-10).
- `plugins.convergence`: convergence tests (no mask left; stable-or-confident of DMax SPD).
- `plugins.gumbel`: LLaDA's Gumbel-max sampling with the reference's random stream (whole-canvas draws).

Strategies in `strategies/` are compositions of these; users combine the plugin classes with any
strategy (`--strategy spd --plugin my_idea.py`).
"""
