"""Write a workbench task's held-out set as a local lm-eval task folder (YAML + JSONL, for `--include_path`).

Used by the tests and docs/lm_eval.md to run lm-eval offline on exactly the examples `workbench run` decodes:

    python -m workbench.harness.local_tasks lm-tasks --task choice --n 500
    lm_eval --model workbench --include_path lm-tasks --tasks workbench_choice_gen ...

The folder holds, for task NAME:
- `NAME.jsonl`: one document per example of `load_task(NAME).eval_split(n)`, in order (`prompt`, `answer`,
  `final`, `uid`, and for multiple choice `choices` / `gold`);
- `workbench_NAME_gen.yaml`: a `generate_until` task scored by the workbench task's own checker (`acc`), the
  same check `workbench run` applies, so both give the same accuracy for the same decoded answers;
- `workbench_NAME_mc.yaml`: a multiple-choice task: the right answer against `distractors` wrong ones
  (answers of other held-out examples that the checker rejects), scored by lm-eval's loglikelihood `acc`;
- `workbench_lm_eval_utils.py`: the `process_results` function the generation task names.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

UTILS = "workbench_lm_eval_utils"

_UTILS_SOURCE = '''"""process_results of the workbench_*_gen tasks (written by workbench.harness.local_tasks)."""

from workbench.tasks import Example, load_task


def process_results(doc, results):
    task = load_task(doc["task"])
    example = Example(prompt=doc["prompt"], answer=doc["answer"], final=doc["final"], uid=doc["uid"])
    return {"acc": float(task.check(example, results[0]))}
'''

_GEN_YAML = """task: workbench_{name}_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: []
  max_gen_toks: {gen}
  do_sample: false
process_results: !function {utils}.process_results
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_MC_YAML = """task: workbench_{name}_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: choices
doc_to_target: gold
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def _distractors(task, examples, i: int, k: int) -> list[str]:
    """k answers of other examples (the following ones, cyclically) that are wrong for example i."""
    out = []
    for step in range(1, len(examples)):
        other = examples[(i + step) % len(examples)].answer
        if other != examples[i].answer and other not in out and not task.check(examples[i], other):
            out.append(other)
            if len(out) == k:
                return out
    raise ValueError(f"not enough wrong answers among {len(examples)} examples for {k} distractors; raise n")


def write_tasks(folder: str | Path, task_name: str = "choice", n: int = 500, *, distractors: int = 3) -> Path:
    """Write the task folder for `load_task(task_name).eval_split(n)`; returns the folder."""
    from workbench.tasks import load_task

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    task = load_task(task_name)
    examples = task.eval_split(n)
    safe = task_name.replace(":", "_").replace("/", "_").replace(".", "_")
    data = folder / f"{safe}.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for i, ex in enumerate(examples):
            wrong = _distractors(task, examples, i, distractors)
            gold = ex.uid % (distractors + 1)  # the right answer's place, varied and reproducible
            choices = wrong[:gold] + [ex.answer] + wrong[gold:]
            f.write(json.dumps({"task": task_name, "uid": ex.uid, "prompt": ex.prompt, "answer": ex.answer,
                                "final": ex.final, "choices": choices, "gold": gold}) + "\n")
    (folder / f"{UTILS}.py").write_text(_UTILS_SOURCE, encoding="utf-8")
    fields = dict(name=safe, data=json.dumps(str(data.resolve())), gen=task.response_len, utils=UTILS)
    (folder / f"workbench_{safe}_gen.yaml").write_text(_GEN_YAML.format(**fields), encoding="utf-8")
    (folder / f"workbench_{safe}_mc.yaml").write_text(_MC_YAML.format(**fields), encoding="utf-8")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.harness.local_tasks", description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--task", default="choice", help="workbench task (default choice)")
    parser.add_argument("--n", type=int, default=500, help="held-out examples (default 500)")
    args = parser.parse_args(argv)
    folder = write_tasks(args.folder, args.task, args.n)
    print(f"wrote {folder}: tasks workbench_{args.task}_gen (generate_until) and workbench_{args.task}_mc "
          f"(multiple choice); pass --include_path {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
