"""The ``adrank`` command line: one subcommand per job, each in its own module.

A subcommand module under ``adrank.commands`` defines ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so ``adrank --help`` stays fast and a command never pays for another's imports.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from adrank import commands


def _command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.ispkg)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="adrank", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True)
    # Only the chosen command's module is imported; the others are listed by name.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name in _command_names():
        if name == chosen:
            module = importlib.import_module(f"adrank.commands.{name}")
            sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
        else:
            subparsers.add_parser(name, add_help=False)
    args = parser.parse_args(argv)
    if args.debug:
        return int(args.run(args) or 0)
    try:
        return int(args.run(args) or 0)
    except (ValueError, TypeError, KeyError, IndexError, OSError) as error:
        # One line a person can act on (the messages name file, line, column); --debug
        # shows the traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"adrank {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
