"""`python -m trainer COMMAND ...`: prepare AI Hub data, train and evaluate models, build bundles, predict."""
from __future__ import annotations

import sys

from core.cli import build_parser, run_command

COMMANDS: dict[str, str] = {
    "prepare": "trainer.prepare",
    "make-fixture": "trainer.fixture",
    "train": "trainer.train",
    "predict": "trainer.predict",
    "build-default": "trainer.default_head",
}


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser("python -m trainer", __doc__.splitlines()[0], COMMANDS), argv)


if __name__ == "__main__":
    sys.exit(main())
