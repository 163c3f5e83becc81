"""Model cards: what a model folder is (recipe, seed, data, loss) and how it decodes (evaluation table).

Written by `workbench train` beside the weights; `refresh_card` rewrites it with the current decoders and the
lab's full ablation when the lab ships a model (`lab/ship.py`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from workbench.results.evaluate import RunSpec, evaluate
from workbench.results.metrics import summarize
from workbench.decoding.registry import make_manager, strategy_threshold_param
from workbench.decoding.state import DecodeConfig
from workbench.results.store import ResultsStore, checkpoint_hash
from workbench.tasks import load_task

# The card's evaluation grid: the careful and the aggressive end of each built-in strategy.
CARD_GRID = (("threshold", 0.95), ("threshold", 0.0), ("hard", 0.5), ("spd", 0.5), ("spd", 0.0))


def evaluation_rows(model, tokenizer, model_path: str, task_name: str, limit: int, block_size: int,
                    grid=CARD_GRID) -> list[dict]:
    """Decode `limit` evaluation examples for every (strategy, tau) of `grid`; one summary dict per cell."""
    task = load_task(task_name)
    examples = task.eval_split(limit)
    decode = DecodeConfig(block_size=block_size, max_new_tokens=task.response_len)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ResultsStore(Path(tmp) / "card.db") as store:
        for strategy, tau in grid:
            params = {strategy_threshold_param(strategy): tau}
            manager = make_manager(strategy, params=params)
            spec = RunSpec(strategy=strategy, params=params, plugins=(), trainer=None, model=model_path,
                           model_hash=checkpoint_hash(model_path), task=task_name, decode=decode)
            _, samples = evaluate(model, tokenizer, task, manager, spec, examples, store)
            s = summarize(samples)
            rows.append({"strategy": strategy, "tau": tau, "n": s.n, "accuracy": s.accuracy, "tpf": s.tpf, "nfe": s.nfe,
                         "tpf_total": s.tpf_total, "nfe_total": s.nfe_total})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The card's evaluation table; rows written before `tpf_total` existed show – in its columns."""
    def total(row: dict, key: str, spec: str) -> str:
        return format(row[key], spec) if key in row else "–"

    lines = ["| strategy | tau | n | accuracy | TPF | TPF_total | NFE | NFE_total |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['tau']} | {r['n']} | {100 * r['accuracy']:.1f} % | {r['tpf']:.2f} | "
              f"{total(r, 'tpf_total', '.2f')} | {r['nfe']:.1f} | {total(r, 'nfe_total', '.1f')} |" for r in rows]
    lines += ["", "TPF / NFE count the prompt prefill inside block 1's first forward; TPF_total / NFE_total count "
                  "it as a forward of its own (DMax, Fast-dLLM)."]
    return "\n".join(lines)


def data_text(meta: dict) -> str:
    """The card's data field: generated task data, or the file trained on with its sha256 and, for a
    `workbench distill` file, where its decodes come from (`training.json`'s `data` record)."""
    record = meta.get("data")
    path = record["path"] if record else meta["train_config"].get("data")
    if not path:
        return "generated from the task (held-out split excluded)"
    if not record:
        return f"`{path}`"
    text = f"`{path}` (sha256 `{record['sha256'][:16]}`)"
    source = record.get("meta")
    if source:
        params = ", ".join(f"{k}={v}" for k, v in source["params"].items()) or "defaults"
        filtered = "kept if the task checks them correct" if source["filtered_by_correctness"] else "unfiltered"
        text += (f": self-distilled, {source['kept']} of {source['decoded']} decodes of `{source['task']}` training "
                 f"prompts (seed {source['seed']}) by `{source['model']}` (checkpoint `{source['model_hash'][:16]}`), "
                 f"{source['strategy']} ({params}), {filtered}")
    return text


def write_card(out: Path, meta: dict, rows: list[dict], extra: str = "") -> Path:
    cfg = meta["train_config"]
    text = f"""# Model card: `{out.name}`

Native block-{'causal' if cfg['block_causal'] else 'bidirectional'} denoiser trained by `workbench train`.

| field | value |
|---|---|
| trainer | {cfg['trainer']} |
| task | {cfg['task']} |
| initialised from | {meta.get('init') or 'scratch'} |
| steps x batch | {cfg['steps']} x {cfg['batch_size']} |
| lr (peak, warmup, cosine) | {cfg['lr']} ({cfg['warmup']}) |
| seed | {cfg['seed']} |
| data | {data_text(meta)} |
| block size | {cfg['block_size']} |
| parameters | {meta['parameters_millions']} M |
| training time | {meta['seconds']} s |
| final loss (mean of last 50 steps) | {meta['final_loss']:.4f} |

## Evaluation (held-out split)

{markdown_table(rows) if rows else 'not evaluated'}
{extra}
Reproduce: `{meta.get('command', 'workbench train ...')}`
"""
    path = out / "README.md"
    path.write_text(text)
    (out / "evaluation.json").write_text(json.dumps(rows, indent=1))
    return path


def refresh_card(folder: str | Path, *, limit: int | None = 500, extra: str = "") -> Path:
    """Rewrite a trained model folder's README.md and evaluation.json from its training.json; `extra` (markdown)
    goes below the evaluation table. With `limit`, the table is decoded afresh on that many held-out examples
    with today's decoders; with None the stored evaluation.json is kept byte for byte, so the folder's
    checkpoint hash (which covers the json files) does not change. Returns the card's path."""
    import torch

    from workbench.models.loading import load_model

    folder = Path(folder)
    meta = json.loads((folder / "training.json").read_text())
    cfg = meta["train_config"]
    if limit is None:
        stored = (folder / "evaluation.json").read_bytes()
        path = write_card(folder, meta, json.loads(stored), extra)
        (folder / "evaluation.json").write_bytes(stored)
        return path
    model, tokenizer = load_model(folder)
    model.eval()
    with torch.no_grad():
        rows = evaluation_rows(model, tokenizer, str(folder), cfg["task"], limit, cfg["block_size"])
    return write_card(folder, meta, rows, extra)
