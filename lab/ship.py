"""Ship lab models as the package defaults: copy a trained model folder (weights, tokenizer, training.json)
into workbench/default_models/<name> and rewrite its card with today's decoders and the lab's grid.

    python lab/ship.py lab/models/choice/oput/seed2 oput --grid lab/results/ablation-pivot.md
    python lab/ship.py workbench/default_models/base base --grid ... --keep-evaluation   # card text only

`--keep-evaluation` leaves the weights and evaluation.json untouched (the checkpoint hash, which names the
model in stored results and in distillation metadata, stays the same) and rewrites only the card's text.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from workbench.results.card import refresh_card
from workbench.models.folders import DEFAULT_MODELS

# What a shipped model folder holds; checkpoint.pt (optimizer state) and the old card are left behind.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="trained model folder")
    parser.add_argument("name", help="shipped name (base, mdlm, uniform, oput)")
    parser.add_argument("--grid", default=None, help="markdown file appended to the card (the lab's grid)")
    parser.add_argument("--limit", type=int, default=500, help="held-out examples of the card's table")
    parser.add_argument("--keep-evaluation", action="store_true", help="rewrite the card's text only")
    args = parser.parse_args()
    source, target = Path(args.source), DEFAULT_MODELS / args.name
    if source.resolve() != target.resolve():
        target.mkdir(parents=True, exist_ok=True)
        for name in MODEL_FILES:
            shutil.copy2(source / name, target / name)
    extra = "\n" + Path(args.grid).read_text() if args.grid else ""
    path = refresh_card(target, limit=None if args.keep_evaluation else args.limit, extra=extra)
    print(f"shipped {source} as {target}; card {path}")


if __name__ == "__main__":
    main()
