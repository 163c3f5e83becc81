"""Build hook: installs `workbench_lm_eval.pth` so that the `lm_eval` command finds `--model workbench`.

Everything else about the package is in pyproject.toml. lm-eval releases up to 0.4.13 look models up only in
their own registry (later ones also read the `lm_eval.models` entry point declared there), so the package
puts a one-line .pth file into site-packages; at interpreter start-up it registers the model in `lm_eval`
processes and does nothing in any other (`workbench/harness/autoload.py` says how).
"""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "workbench_lm_eval.pth"


def _pth_line() -> str:
    # autoload.py imports only os and sys at module level: loaded from its file, it needs none of the
    # package's dependencies, which the build environment does not have.
    path = Path(__file__).parent / "workbench" / "harness" / "autoload.py"
    spec = importlib.util.spec_from_file_location("_workbench_harness_autoload", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PTH_LINE


class BuildPyWithPth(build_py):
    """build_py that also writes the .pth at the top level of what gets installed into site-packages."""

    def run(self):
        super().run()
        # A wheel installs its build directory's top level into site-packages; an editable wheel (PEP 660)
        # carries only what setuptools' editable_wheel puts in its install directory.
        top = self.get_finalized_command("install").install_lib if self.editable_mode else self.build_lib
        Path(top).mkdir(parents=True, exist_ok=True)
        (Path(top) / PTH_NAME).write_text(_pth_line(), encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithPth})
