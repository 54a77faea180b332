"""The shape both command lines share: one module per command, each with add_arguments() and run().

Command modules keep heavy imports (torch, transformers, Whisper) inside their functions, so
`--help` and light commands start quickly. A UserError is printed as one line (exit 2); anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from core.errors import UserError


def build_parser(prog: str, description: str, commands: dict[str, str]) -> argparse.ArgumentParser:
    """`commands` maps a command name to its module; the module docstring's first line is its help."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in commands.items():
        module = importlib.import_module(module_name)
        doc = (module.__doc__ or name).strip().splitlines()[0]
        command = sub.add_parser(name, help=doc, description=doc)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
