"""`lm_eval --model workbench` on lm-eval releases that look models up only in their own registry.

lm-eval up to 0.4.13 has no way to find a model from another package on its command line (its newer
releases read the `lm_eval.models` entry point that pyproject.toml declares). So the package installs a
one-line `workbench_lm_eval.pth` beside itself (setup.py); Python runs it at start-up, and in an `lm_eval` /
`lm-eval` / `python -m lm_eval` process only it calls `register()`, which puts a lazy placeholder for
`WorkbenchLM` into lm-eval's model registry: nothing of the workbench is imported until lm-eval asks for the
model. `python -m workbench.harness ARGS` is the same command without the start-up file.
"""

from __future__ import annotations

import sys

MODEL_NAME = "workbench"
TARGET = "workbench.harness.lm_eval_model:WorkbenchLM"
# The line of workbench_lm_eval.pth (site.py executes .pth lines that start with `import`). It names the
# process test inline so that no other Python process imports anything.
PTH_LINE = ("import sys; 'lm_eval' in (sys.argv[0].replace('-', '_').rpartition('/')[2], "
            "*getattr(sys, 'orig_argv', ())[1:3]) and __import__('workbench.harness.autoload', "
            "fromlist=['register']).register()\n")


def lm_eval_command_line() -> bool:
    """Whether this process is lm-eval's command line (`lm_eval`, `lm-eval`, `python -m lm_eval`, or `python -m
    workbench.harness`), where a bad model argument ends the command with one line and exit code 2 instead of
    an exception (the test `PTH_LINE` makes, plus this package's own `python -m`)."""
    program = sys.argv[0].replace("-", "_").replace("\\", "/").rpartition("/")[2] if sys.argv else ""
    launched = tuple(getattr(sys, "orig_argv", ())[1:3])
    return program == "lm_eval" or "lm_eval" in launched or "workbench.harness" in launched


def register() -> bool:
    """Put the placeholder into lm-eval's model registry unless the name is taken; True when added now.

    No-op (False) without lm-eval, or with a release older than its `Registry` (0.4.10), or when the
    registry already knows the name (a previous call, or lm-eval itself).
    """
    try:
        import lm_eval.models  # noqa: F401  built-ins first: lm-eval adds them only to an empty registry
        from lm_eval.api.registry import model_registry
    except ImportError:
        return False
    if MODEL_NAME in model_registry:
        return False
    model_registry.register(MODEL_NAME, target=TARGET)
    return True


def main(argv: list[str] | None = None) -> None:
    """lm-eval's command line with the model registered: `python -m workbench.harness --model workbench ...`."""
    from lm_eval.__main__ import cli_evaluate

    register()
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()
