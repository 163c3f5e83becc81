"""The workbench inside other evaluation harnesses: EleutherAI's lm-evaluation-harness (`lm-eval`).

- `lm_eval_model`: the lm-eval model `workbench` (needs `pip install -e .[lm-eval]`);
- `arguments`: its model arguments, `workbench run`'s own options;
- `prompts`: request strings to ids as lm-eval's HF model encodes them (special tokens, chat template), and the
  fingerprint that tells a run's prompts apart (few-shot count, system instruction);
- `generation`: `generate_until` requests decoded and recorded through `workbench.results.evaluate`;
- `likelihood`: the Monte-Carlo ELBO behind `loglikelihood` / `loglikelihood_rolling`;
- `checks`: optional answer checks, so the results store knows which generated answers were right;
- `local_tasks`: a workbench task's held-out set as a local lm-eval task folder (tests, offline demos);
- `autoload`: `lm_eval --model workbench` with lm-eval releases that do not read entry points.

Importing this package imports neither lm-eval nor torch models: `autoload` runs at interpreter start-up.
"""
