"""Write a ready-to-run decoding plugin NAME.py and its test file (or, with --package, an installable package).

The plugin implements the hooks given with --hooks (default: promote), with the core's hook docstrings
and a working body for each; the promote template is a confidence threshold with one line to edit.
It runs as-is (`workbench run --strategy spd --plugin NAME.py`) and passes `workbench check-plugin NAME.py`.
Existing files are never overwritten.
"""

from __future__ import annotations

from workbench.decoding.markers import ALL_HOOKS
from workbench.authoring.scaffold import DEFAULT_HOOKS, write

HELP = "write a ready-to-run plugin file (and its tests) to start a new decoding idea"


def add_arguments(parser) -> None:
    parser.add_argument("name", help="plugin name, a Python identifier (the module is NAME.py)")
    parser.add_argument("--hooks", default=",".join(DEFAULT_HOOKS), metavar="H1,H2",
                        help=f"hooks to implement (default {','.join(DEFAULT_HOOKS)}; any of {', '.join(ALL_HOOKS)})")
    parser.add_argument("--package", action="store_true",
                        help="write a package folder NAME/ with pyproject.toml declaring the `workbench` entry point")
    parser.add_argument("--dir", default=".", metavar="D", help="where to write (default: the current folder)")


def main(args) -> int:
    paths = write(args.name, args.hooks, package=args.package, directory=args.dir)
    plugin = next(p for p in paths if p.name == f"{args.name}.py")
    for path in paths:
        print(f"wrote {path}")
    print("next:")
    print(f"  edit the line marked '<- EDIT' in {plugin}")
    print(f"  workbench check-plugin {plugin}")
    print(f"  workbench run --strategy spd --plugin {plugin} --trainer oput")
    if args.package:
        print(f"  pip install -e {plugin.parent}   # then: workbench plugins; workbench run --strategy {args.name}")
    return 0
