"""`python -m workbench.harness ARGS`: lm-eval's command line with `--model workbench` registered."""

from workbench.harness.autoload import main

main()
