"""`python -m streamer COMMAND ...`: the live monitor daemon and its tools, one module per command.

Same convention as `python -m trainer`: each command module has add_arguments() and run(), keeps
heavy imports (Whisper, torch) inside its functions, and raises UserError for anything the user
can fix, which is printed as one line.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from trainer.errors import UserError

# command name -> module. Each module's docstring's first line is its help text.
COMMANDS: dict[str, str] = {
    "run": "streamer.session",
    "devices": "streamer.devices",
    "replay": "streamer.replay",
    "analyze": "streamer.analyze",
}


def build_parser(commands: dict[str, str] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m streamer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in commands.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:  # a real missing dependency: say so
                raise
            continue  # command not built yet in this checkout
        doc = (module.__doc__ or name).strip().splitlines()[0]
        command = sub.add_parser(name, help=doc, description=doc)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
