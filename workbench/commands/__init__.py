"""Sub-commands of the `workbench` CLI; each module has HELP, add_arguments(parser) and main(args)."""

from workbench.commands import distill, listing, run, train
from workbench.commands import check_plugin, new_plugin, plugins
from workbench.commands import ablate, plot, report, trace

COMMANDS = {
    "run": run,
    "train": train,
    "distill": distill,
    "list": listing,
    "new-plugin": new_plugin,
    "check-plugin": check_plugin,
    "plugins": plugins,
    "ablate": ablate,
    "report": report,
    "plot": plot,
    "trace": trace,
}
