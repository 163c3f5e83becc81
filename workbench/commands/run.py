"""Decode a task's evaluation set with one strategy on one model and print accuracy, TPF, TPS, NFE.

Per-sample results go to the results store (`--store`): rerunning the same command reuses the samples
already decoded, so an interrupted evaluation resumes where it stopped. Under torchrun
(`torchrun --nproc_per_node N -m workbench run ...`) the samples are shared out over the N processes
and gathered on rank 0, which alone writes the store and prints; the numbers equal a one-process run.
"""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext

from workbench.commands.common import (
    add_decoding_arguments, add_model_arguments, add_quiet_argument, chat_template_for, check_decoding_counts,
    decode_config, placed_model, resolve_model, showing_progress, strategy_params, task_for,
)

HELP = "decode a task's evaluation set and print accuracy, TPF, TPS, NFE"
DEFAULT_LIMIT = 500


def add_arguments(parser) -> None:
    parser.add_argument("--strategy", default="spd", help="decoding strategy (see `workbench list`)")
    parser.add_argument("--tau", type=float, default=None,
                        help="the strategy's main knob (threshold: tau; hard/spd: tau_dec; eb: gamma; ...: `workbench list`)")
    add_model_arguments(parser)
    add_decoding_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout instead of a table")
    add_quiet_argument(parser)


def prepare(args):
    """(model, tokenizer, task, examples, manager, spec, revision counter) for the parsed arguments."""
    from plugins.tracer import RevisionCounter
    from workbench.decoding.registry import make_manager
    from workbench.results.evaluate import RunSpec
    from workbench.results.provenance import task_identity
    from workbench.results.store import checkpoint_hash

    check_decoding_counts(args)  # before any model loads
    params = strategy_params(args)
    revisions = RevisionCounter()
    manager = make_manager(args.strategy, params=params, plugin_files=args.plugin, extra_plugins=[revisions])
    model_path, trainer = resolve_model(args)
    model, tokenizer, precision = placed_model(model_path, args)  # under torchrun: this rank's GPU
    task_name, task = task_for(args, model_path)
    examples = task.eval_split(args.limit or DEFAULT_LIMIT)
    decode = decode_config(args, model, task)
    spec = RunSpec(strategy=args.strategy, params=params, plugins=tuple(args.plugin), trainer=trainer,
                   model=model_path, model_hash=checkpoint_hash(model_path), task=task_name, decode=decode,
                   precision=precision, batch_size=args.batch_size,
                   chat_template=chat_template_for(args, model, tokenizer), task_content=task_identity(task))
    return model, tokenizer, task, examples, manager, spec, revisions


def run_with_progress(args, model, tokenizer, task, examples, manager, spec, revisions):
    """(the run's samples, how many of them were decoded now; the rest came from the store)."""
    from workbench.results.evaluate import evaluate
    from workbench.results.store import ResultsStore
    from workbench.runtime.distributed import is_main

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    decoded = 0

    def advance(n: int) -> None:
        nonlocal decoded
        decoded += n
        bar.advance(job, n)

    with ResultsStore(args.store) if is_main() else nullcontext() as store:  # rank 0 alone holds the store
        show = showing_progress(args) and is_main()
        with Progress(TextColumn(f"{spec.strategy}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      disable=not show, transient=True) as bar:
            job = bar.add_task("decode", total=len(examples))
            _, samples = evaluate(model, tokenizer, task, manager, spec, examples, store,
                                  batch_size=args.batch_size, on_batch=advance, sample_extras=revisions.extras)
    return samples, decoded


def main(args) -> int:
    from workbench.decoding.registry import decision_providers, format_providers
    from workbench.results.metrics import extras_summary, revision_stats, summarize
    from workbench.results.provenance import observer_files
    from workbench.runtime.distributed import is_main, process_group

    with process_group():  # joins torchrun's group when launched by it; nothing otherwise
        model, tokenizer, task, examples, manager, spec, revisions = prepare(args)
        samples, decoded = run_with_progress(args, model, tokenizer, task, examples, manager, spec, revisions)
        if not is_main():
            return 0
    summary = summarize(samples)
    revs = revision_stats(samples)
    observers, served = observer_files(spec.plugins), len(samples) - decoded
    # Positions a strategy left masked (DMax's fill_at_cap=false, mask_logit=keep): said, never hidden.
    unfilled = [s.extras.get("unfilled", 0) for s in samples]
    result = {
        "strategy": spec.strategy, "trainer": spec.trainer, "model": spec.model, "task": spec.task,
        "n": summary.n, "accuracy": summary.accuracy, "tpf": summary.tpf, "pooled_tpf": summary.pooled_tpf,
        "tps": summary.tps, "nfe": summary.nfe, "tokens": summary.tokens, "params": spec.params,
        "nfe_total": summary.nfe_total, "tpf_total": summary.tpf_total,  # prefill as its own forward (DMax)
        "plugins": list(spec.plugins), "decisions": decision_providers(manager),
        "block_size": spec.decode.block_size, "gen_length": spec.decode.max_new_tokens,
        "last_block": spec.decode.last_block, "store": args.store,
        "precision": spec.precision, "revisions": None if revs is None else revs.mean_revisions,
        "revisions_fixed": None if revs is None else revs.fixed, "revisions_broke": None if revs is None else revs.broke,
        "from_store": served, "observers": observers,  # observers saw only the samples decoded now
        "unfilled_samples": sum(1 for u in unfilled if u), "unfilled_positions": sum(unfilled),
        "extras": extras_summary(samples),  # observers' per-sample values: samples carrying each, mean
    }
    if args.json:
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{spec.strategy} on {spec.trainer or spec.model} / {spec.task} (n={summary.n})")
    for col in ("accuracy", "TPF", "TPF_total", "TPS", "NFE", "NFE_total", "tokens"):
        table.add_column(col, justify="right")
    table.add_row(f"{100 * summary.accuracy:.1f} %", f"{summary.tpf:.2f}", f"{summary.tpf_total:.2f}",
                  f"{summary.tps:.1f}", f"{summary.nfe:.1f}", f"{summary.nfe_total:.1f}", f"{summary.tokens:.1f}")
    console = Console()
    console.print(table)
    console.print(f"decisions: {format_providers(manager)}")
    console.print("NFE: forwards per sample, the prompt prefill fused into block 1's first forward; "
                  "NFE_total / TPF_total count the prefill as a forward of its own (DMax, Fast-dLLM)")
    whole = (f" (last block decoded whole: {spec.decode.decoded_length} positions, cut)"
             if spec.decode.decoded_length != spec.decode.max_new_tokens else "")
    console.print(f"params: {spec.params or 'defaults'}; block {spec.decode.block_size}, "
                  f"gen {spec.decode.max_new_tokens}{whole}, {spec.precision}; per-sample results in {args.store}")
    if observers and served:
        console.print(f"observers: {', '.join(observers)} ran on the {decoded} samples decoded now, not on the "
                      f"{served} read from {args.store} (decoded earlier; observers cannot change a sample, so "
                      f"they are not part of its key); --store NEW.db decodes all with them")
    if result["extras"]:
        console.print("extras: " + ", ".join(
            f"{name} " + (f"mean {e['mean']:.3g}" if e["mean"] is not None else "stored") + f" ({e['samples']} samples)"
            for name, e in result["extras"].items()))
    if revs is not None and revs.total_revisions:
        console.print(f"revisions: {revs.mean_revisions:.2f} per sample; they fixed {revs.fixed} answers and "
                      f"broke {revs.broke}")
    if result["unfilled_positions"]:
        console.print(f"[yellow]masked output:[/] {result['unfilled_samples']} samples kept "
                      f"{result['unfilled_positions']} positions masked (the strategy leaves positions open when a "
                      f"block ends or commits MASK predictions: fill_at_cap=false / mask_logit=keep); they count "
                      f"as generated tokens and their text is empty")
    return 0
