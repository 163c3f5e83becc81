"""`workbench` command line: one sub-command per module in `workbench/commands/`.

Errors a user can fix (unknown strategy, bad threshold, missing model folder, bad task file, a plugin
that breaks the contract, a full or read-only disk) end the program with exit code 2 and one line saying
what to do; anything else is a bug and keeps its traceback. Ctrl-C, even while the program is still
starting (importing torch), ends it with exit code 130 and one line saying what was kept.

This module imports nothing heavy at the top: `python -m workbench` and the console script reach `main`
at once, so every later moment of start-up is inside its error handling.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import warnings

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Said on Ctrl-C unless the command module has its own INTERRUPTED line (train speaks of checkpoints).
INTERRUPTED = "interrupted; finished samples are saved, rerun the same command to resume"
STARTUP_INTERRUPTED = "interrupted while starting; nothing was run"


def build_parser() -> argparse.ArgumentParser:
    from workbench.commands import COMMANDS

    parser = argparse.ArgumentParser(prog="workbench", description="Parallel decoding workbench for diffusion LMs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        cmd = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(cmd)
        cmd.set_defaults(handler=module.main, interrupted=getattr(module, "INTERRUPTED", INTERRUPTED))
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input, not a bug: print one line, exit 2."""
    from workbench.decoding.contract import PluginContractError
    from workbench.models.folders import ModelLoadError
    from workbench.decoding.registry import PluginError
    from workbench.results.store import StoreError
    from workbench.tasks import TaskFileError

    from workbench.decoding.state import ModelInputsDenied

    errors: list[type[BaseException]] = [PluginError, PluginContractError, ModelLoadError, StoreError, TaskFileError,
                                         ModelInputsDenied]
    try:
        from workbench.models.adapters import AdapterError

        errors.append(AdapterError)
    except ImportError:
        pass
    return tuple(errors)


# What to do about an OSError while reading or writing a user's file, by errno.
_OS_FIXES = {
    errno.ENOSPC: "the disk is full: free some space, then rerun the same command",
    errno.EDQUOT: "the disk quota is used up: free some space, then rerun the same command",
    errno.EROFS: "the disk is read-only: choose a path on a writable disk",
    errno.EACCES: "permission denied: choose a path you can write",
    errno.EPERM: "permission denied: choose a path you can write",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a file of that name is in the way: choose another path",
    errno.EISDIR: "that path is a folder: give a file name",
    errno.ENOENT: "no such file or folder: check the path",
}


def os_error_line(err: OSError) -> str:
    where = f" {err.filename}" if err.filename else ""
    fix = _OS_FIXES.get(err.errno, "check the path, the free space and the permissions")
    return f"cannot use{where} ({err.strerror or err}); {fix}"


def quiet_transformers() -> None:
    """transformers draws its own bars for loading and saving weights; ours already say what runs, and a
    user error must stay one line on stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _short_warnings() -> None:
    """The workbench's own warnings (a skipped plugin, an unreadable log) as one line each, without the
    source line Python prints under a warning."""
    from workbench.decoding.registry import PluginSkippedWarning

    default = warnings.formatwarning

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, PluginSkippedWarning) or filename.startswith(_PACKAGE_DIR):
            return f"workbench: warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = formatwarning


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class _StartupInterrupts:
    """Notes a Ctrl-C while the program starts (the heavy imports), then raises KeyboardInterrupt as usual.

    An interrupt that cuts a library's import short (numpy, scipy) can surface as another error when the
    library's own import code catches it and tries again (a RecursionError, an AttributeError of a half-built
    module): the note tells those apart from a real start-up failure. Only the main thread may set a handler."""

    def __enter__(self):
        self.seen = False
        self.previous = None
        # A SIGINT ignored by whoever started us (`nohup`, a background job of a script) stays ignored for the
        # whole run, start-up included: Python keeps an inherited SIG_IGN, so the rest of the run ignores it too.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            return self
        try:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave the handler alone
            self.previous = None
        return self

    def _handle(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def main(argv: list[str] | None = None) -> int:
    command, interrupted = "", STARTUP_INTERRUPTED
    with _StartupInterrupts() as startup:
        try:
            args = build_parser().parse_args(argv)
            command, interrupted = args.command, args.interrupted
            quiet_transformers()
            _short_warnings()
            errors = user_errors()
            from workbench.commands.common import one_line  # user errors as one line (commands use it too)
        except BaseException as err:
            if not (startup.seen or isinstance(err, KeyboardInterrupt)):
                raise
            print(f"workbench{' ' + command if command else ''}: {interrupted}", file=sys.stderr, flush=True)
            # Leave at once: the interrupt may have cut an import short, and the interpreter's normal shutdown
            # can trip over such a module. Nothing was run, so there is nothing to flush or close.
            os._exit(EXIT_INTERRUPTED)
    from workbench.decoding.contract import PluginRuntimeError

    try:
        return args.handler(args) or 0
    except PluginRuntimeError as err:
        # A bug in a plugin's code: its own traceback first (what its author needs), then the one line that
        # names the plugin, the hook and the file:line. A built-in refusing its input is only the line.
        if not err.about_input:
            print(err.traceback_text().rstrip(), file=sys.stderr)
        print(f"workbench {command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except errors as err:
        print(f"workbench {command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as err:  # attrs validators and argument checks raise ValueError with a clear message
        print(f"workbench {command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # a full or read-only disk, a path that is a file: the user's environment, not a bug
        print(f"workbench {command}: error: {os_error_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"workbench {command}: {interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
