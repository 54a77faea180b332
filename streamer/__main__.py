"""`python -m streamer COMMAND ...`: the live monitor daemon and its tools, one module per command.

Same convention as `python -m trainer`: each command module has add_arguments() and run(), keeps
heavy imports (Whisper, torch) inside its functions, and raises UserError for anything the user
can fix, which is printed as one line.
"""
from __future__ import annotations

import sys

from core.cli import build_parser, run_command

COMMANDS: dict[str, str] = {
    "run": "streamer.run",
    "devices": "streamer.devices",
    "replay": "streamer.replay",
    "analyze": "streamer.analyze",
    "enroll": "streamer.enroll",
    "voiceprints": "streamer.voiceprints",
}


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser("python -m streamer", __doc__.splitlines()[0], COMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
