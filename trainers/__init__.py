"""Training objectives, registered by name from an explicit tuple (like the strategies)."""

import attrs

from trainers.mdlm import MDLM
from trainers.oput import OPUT
from trainers.uniform import Uniform

BUILTIN_TRAINERS = (MDLM, OPUT, Uniform)
TRAINERS = {cls.name: cls for cls in BUILTIN_TRAINERS}


def make_objective(name: str, **params):
    if name not in TRAINERS:
        raise ValueError(f"unknown trainer {name!r}; choose one of: {', '.join(sorted(TRAINERS))}")
    known = [f.name for f in attrs.fields(TRAINERS[name])]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"trainer {name!r} has no parameter {unknown[0]!r}; its parameters: "
                         f"{', '.join(known) or 'none'}")
    return TRAINERS[name](**params)


__all__ = ["TRAINERS", "make_objective"]
