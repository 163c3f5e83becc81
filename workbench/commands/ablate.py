"""Decode the same evaluation samples with every strategy x trainer x tau x seed cell, then print the grid.

Every cell runs through `workbench.results.evaluate.evaluate`, so each finished sample is in the results store
(`--store`) at once: rerunning the same command after Ctrl-C or `kill -9` decodes only what is missing.
Each trainer's model is loaded once (the shipped default model, or `--model-dir DIR/<trainer>`); `--tau` sets
each strategy's main threshold (threshold: tau, hard/spd: tau_dec, hierarchical: its high threshold...).
Training seeds: when DIR/<trainer> holds model folders `seed<K>/` instead of a model, each is decoded as the
trainer label `<trainer>/seed<K>`, and the grid reports every cell as mean ± std over those training seeds.
With greedy decoding (temperature 0) seeds give identical decodes; they matter with --temperature > 0.
Under torchrun every cell's samples are shared out over the processes and gathered on rank 0, which alone
writes the store and prints (see `workbench.results.evaluate`).
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path

from workbench.commands.common import (
    add_canvas_arguments, add_chat_template_argument, add_placement_arguments, add_quiet_argument,
    add_trust_argument, chat_template_for, check_decoding_counts, decode_config, one_line, parse_sets, placed_model,
    showing_progress, task_for,
)
from workbench.results.report import DEFAULT_REFERENCE, FORMATS, build_report, check_reference, print_table, render
from workbench.models.folders import ModelLoadError, default_model_path

HELP = "decode the strategy x trainer x tau x seed grid on the same samples; resumable"
DEFAULT_LIMIT = 500
# The mission's four: the default grid (`--strategies all` adds every other installed strategy).
DEFAULT_STRATEGIES = ("spd", "hard", "threshold", "hierarchical")


def add_arguments(parser) -> None:
    grid = parser.add_argument_group("grid")
    grid.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES),
                      help="comma-separated strategies, or `all`: every installed strategy with a main threshold, "
                           "those that cannot decode the models skipped with the reason (the leaderboard)")
    grid.add_argument("--trainers", default="mdlm,oput,uniform", help="comma-separated trainers (one model each)")
    grid.add_argument("--tau", default=None,
                      help="comma-separated values of the main knob for every strategy (default: each strategy's "
                           "own grid, its `tau_grid`, else 0.95,0.5,0)")
    grid.add_argument("--seeds", default="0", help="comma-separated decoding seeds")
    grid.add_argument("--model-dir", default=None, metavar="DIR",
                      help="folder with one model subfolder per trainer, or per trainer one subfolder seed<K> per "
                           "training seed (default: the shipped models)")
    add_trust_argument(grid)
    dec = parser.add_argument_group("decoding")
    dec.add_argument("--task", default=None, help="task name or jsonl:PATH (default: the first model's training task)")
    dec.add_argument("--limit", type=int, default=None, metavar="N", help=f"first N examples (default {DEFAULT_LIMIT})")
    dec.add_argument("--block-size", type=int, default=None, metavar="N", help="block length (default: the model's)")
    dec.add_argument("--gen-length", type=int, default=None, metavar="N", help="generated positions (default: the task's)")
    dec.add_argument("--batch-size", type=int, default=64, metavar="N", help="prompts decoded together")
    dec.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    dec.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                     help="override plugin file for every cell (repeatable)")
    dec.add_argument("--set", action="append", default=[], metavar="[STRATEGY.]NAME=VALUE",
                     help="a strategy parameter, for every strategy that has it or for one strategy")
    add_canvas_arguments(dec)
    add_chat_template_argument(dec)
    add_placement_arguments(dec)
    dec.add_argument("--store", default="workbench-results.db", metavar="FILE",
                     help="results store; finished samples of the same configuration are reused")
    out = parser.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print the report as JSON; no progress bar")
    out.add_argument("--format", choices=FORMATS, default="table", help="format of the final grid")
    out.add_argument("--reference", default=None, metavar="STRATEGY[@TAU]",
                     help="reference cell of the significance marks (see `workbench report`)")
    add_quiet_argument(out)


def strategy_params(strategies: list[str], pairs: list[str]) -> dict[str, dict]:
    """--set values per strategy: `name=v` goes to every strategy with that parameter, `spd.name=v` to one."""
    from workbench.decoding.registry import StrategyParamError, available_strategies

    fields = {s.name: set(s.params) for s in available_strategies()}
    out: dict[str, dict] = {s: {} for s in strategies}
    for name, value in parse_sets(pairs).items():
        target, dot, param = name.rpartition(".")
        if dot:
            if target not in out:
                raise StrategyParamError(f"--set {name}: {target!r} is not one of --strategies {','.join(strategies)}")
            out[target][param] = value
            continue
        takers = [s for s in strategies if param in fields.get(s, ())]
        if not takers:
            raise StrategyParamError(f"--set {name}: no strategy of {','.join(strategies)} has a parameter {param!r}")
        for s in takers:
            out[s][param] = value
    return out


def seed_folders(path: Path) -> dict[int, Path]:
    """Training seed -> model folder for the `seed<K>/` model folders inside `path` (empty when there are none)."""
    found = {}
    for sub in path.glob("seed*"):
        if sub.name[4:].isdigit() and (sub / "config.json").is_file():
            found[int(sub.name[4:])] = sub
    return dict(sorted(found.items()))


def model_paths(trainers: list[str], model_dir: str | None) -> dict[str, str]:
    """Trainer label -> model folder: `t` for DIR/t (or the shipped model), `t/seedK` for each DIR/t/seedK."""
    from trainers import TRAINERS

    known = set(TRAINERS) | {"base"}
    paths = {}
    for t in trainers:
        if model_dir is not None:
            path = Path(model_dir) / t
            if not path.is_dir():
                if t not in known:
                    raise ValueError(f"unknown trainer {t!r}: no folder {path}; trainers: {', '.join(sorted(known))}")
                raise ModelLoadError(f"--model-dir {model_dir} has no subfolder {t!r} (one model folder per trainer)")
            seeds = {} if (path / "config.json").is_file() else seed_folders(path)
            if not seeds and not (path / "config.json").is_file():
                raise ModelLoadError(f"{path} holds neither a model (config.json) nor training-seed model folders "
                                     f"seed<K>/")
            for k, sub in seeds.items():
                paths[f"{t}/seed{k}"] = str(sub)
            if not seeds:
                paths[t] = str(path)
        else:
            if t not in known:
                raise ValueError(f"unknown trainer {t!r}; trainers: {', '.join(sorted(known))}")
            paths[t] = str(default_model_path(t))
    return paths


def main(args) -> int:
    from workbench.runtime.distributed import process_group

    with process_group():  # joins torchrun's group when launched by it; nothing otherwise
        return _main(args)


def refusal(err: BaseException) -> str | None:
    """The one-line reason when `err` is a strategy refusing the model it was given (a built-in's ValueError or
    a missing model capability), else None (a bug, or a plugin breaking the contract: not skipped)."""
    from workbench.decoding.contract import PluginContractError, PluginRuntimeError
    from workbench.models.base import ModelInputsDenied

    if isinstance(err, PluginRuntimeError):
        return one_line(err.error) if err.about_input else None
    if isinstance(err, PluginContractError):
        return None
    if isinstance(err, (ModelInputsDenied, ValueError)):
        return one_line(err)
    return None


def leaderboard_strategies() -> list[str]:
    """`--strategies all`: every installed strategy that has a main threshold (so a grid), builtins first."""
    from workbench.decoding.registry import StrategyParamError, strategy_names, strategy_threshold_param

    names = []
    for name in strategy_names():
        try:
            strategy_threshold_param(name)
        except StrategyParamError:
            continue
        names.append(name)
    return names


def _main(args) -> int:
    from workbench.decoding.registry import (
        decision_providers, make_manager, strategy_plugin, strategy_tau_grid, strategy_threshold_param,
    )
    from workbench.results.evaluate import RunSpec, evaluate
    from workbench.results.grid import CellResult, expand, parse_list, parse_seeds, parse_taus
    from workbench.results.provenance import observer_files, task_identity
    from workbench.results.runlock import RunBusy
    from workbench.results.store import ResultsStore, checkpoint_hash, config_key
    from workbench.runtime.distributed import is_main

    everything = args.strategies.strip() == "all"
    strategies = leaderboard_strategies() if everything else parse_list(args.strategies, "strategies")
    trainers = parse_list(args.trainers, "trainers")
    taus = ({s: strategy_tau_grid(s) for s in strategies} if args.tau is None
            else dict.fromkeys(strategies, parse_taus(args.tau)))
    seeds = parse_seeds(args.seeds)
    check_decoding_counts(args)  # --limit, --batch-size, --block-size, --gen-length: before any model loads
    if args.reference is not None:  # a reference outside the grid would only show after decoding everything
        check_reference(args.reference, {s: set(t) for s, t in taus.items()})
    per_strategy = strategy_params(strategies, args.set)
    for s in strategies:  # build every strategy now so a bad parameter (or tau) fails before any model loads
        for tau in taus[s]:
            strategy_plugin(s, {**per_strategy[s], strategy_threshold_param(s): tau})
        make_manager(s, params={**per_strategy[s], strategy_threshold_param(s): taus[s][0]}, plugin_files=args.plugin)
    paths = model_paths(trainers, args.model_dir)
    labels = list(paths)  # trainers, with one label per training seed where DIR/<trainer> holds seed folders
    cells = expand(strategies, labels, taus, seeds)

    models = {t: placed_model(p, args) for t, p in paths.items()}  # each loaded once; torchrun: this rank's GPU
    hashes = {t: checkpoint_hash(p) for t, p in paths.items()}
    task_name, task = task_for(args, paths[labels[0]])
    examples = task.eval_split(args.limit or DEFAULT_LIMIT)
    content = task_identity(task)

    from plugins.tracer import RevisionCounter

    jobs = []
    for cell in cells:
        params = {**per_strategy[cell.strategy], strategy_threshold_param(cell.strategy): cell.tau}
        counter = RevisionCounter()
        manager = make_manager(cell.strategy, params=params, plugin_files=args.plugin, extra_plugins=[counter])
        model, tokenizer, precision = models[cell.trainer]
        decode = decode_config(args, model, task, seed=cell.seed)
        spec = RunSpec(strategy=cell.strategy, params=params, plugins=tuple(args.plugin), trainer=cell.trainer,
                       model=paths[cell.trainer], model_hash=hashes[cell.trainer], task=task_name, decode=decode,
                       precision=precision, batch_size=args.batch_size,
                       chat_template=chat_template_for(args, model, tokenizer), task_content=content)
        jobs.append((cell, manager, counter, spec))

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    t0 = time.perf_counter()
    results: list[CellResult] = []
    wanted = {ex.uid for ex in examples}
    with ResultsStore(args.store) if is_main() else nullcontext() as store:  # rank 0 alone holds the store
        show = showing_progress(args) and is_main()
        done = sum(len(store.done_samples(config_key(spec.config(decision_providers(m)))) & wanted)
                   for _, m, _, spec in jobs) if store is not None else 0
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      disable=not show, transient=True) as bar:
            job = bar.add_task("ablate", total=len(jobs) * len(examples), completed=done)
            # A cell another process is decoding (the same ablation started twice on one store) is put off
            # until the other cells are done, then waited for; its samples are reused, never decoded twice.
            finished: dict[int, CellResult] = {}
            decoded = [0]  # samples this process decoded; the rest were reused (stored before, or by another process)

            def advance(n: int) -> None:
                decoded[0] += n
                bar.advance(job, n)

            skipped: dict[tuple[str, str], str] = {}  # (strategy, trainer) -> why it cannot decode that model
            for wait in (False, True):
                for i, (cell, manager, counter, spec) in enumerate(jobs):
                    if i in finished or (cell.strategy, cell.trainer) in skipped:
                        continue
                    bar.update(job, description=cell.label)
                    model, tokenizer, _ = models[cell.trainer]
                    try:
                        key, samples = evaluate(model, tokenizer, task, manager, spec, examples, store,
                                                batch_size=args.batch_size, on_batch=advance,
                                                sample_extras=counter.extras, wait=wait)
                    except RunBusy:
                        continue
                    except Exception as err:
                        reason = refusal(err) if everything else None
                        if reason is None:
                            raise
                        skipped[cell.strategy, cell.trainer] = reason  # the leaderboard goes on without it
                        bar.advance(job, len(examples))
                        continue
                    finished[i] = CellResult(key=key, config=spec.config(decision_providers(manager)),
                                             samples=tuple(samples))
            results = [finished[i] for i in range(len(jobs)) if i in finished]
            reused = len(results) * len(examples) - decoded[0]
    elapsed = time.perf_counter() - t0
    if not is_main():
        return 0

    for (strategy, trainer), reason in skipped.items():  # said with the grid, never silently missing
        print(f"skipped {strategy} on {trainer}: {reason}", file=sys.stderr)
    report = build_report(results, args.reference or DEFAULT_REFERENCE)
    report["skipped"] = [{"strategy": s, "trainer": t, "reason": r} for (s, t), r in skipped.items()]
    fmt = "json" if args.json else args.format
    text = render(report, fmt)
    if text is not None:
        print(text, end="" if text.endswith("\n") else "\n")
    else:
        print_table(report)
        print(f"{len(jobs)} cells x {len(examples)} samples of {task_name} in {elapsed:.1f} s "
              f"({reused} reused from {args.store}); `workbench report --store {args.store}` prints this again")
        observers = observer_files(args.plugin)
        if observers and reused:
            print(f"observers: {', '.join(observers)} did not run on the {reused} samples reused from {args.store} "
                  f"(observers cannot change a sample, so they are not part of its key); --store NEW.db decodes all "
                  f"with them")
    return 0
