"""List the enrolled voiceprints, or delete one: `voiceprints [--delete ROLE] [--voiceprints DIR]`.

Deleting removes the file: the embedding is gone from this machine (nothing else holds it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from streamer.config import load_config, override


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delete", metavar="ROLE", help="delete ROLE's voiceprint")
    parser.add_argument("--voiceprints", metavar="DIR", help="folder of voiceprints (default: speakers.voiceprints)")
    parser.add_argument("--config", type=Path, help="config.toml (default: built-in defaults)")


def run(args: argparse.Namespace) -> int:
    from core import voiceprints

    config = override(load_config(args.config), {"speakers.voiceprints": args.voiceprints})
    folder = voiceprints.resolve_dir(config.speakers.voiceprints)
    if args.delete:
        path = voiceprints.delete(folder, args.delete)
        print(f"deleted the voiceprint of {args.delete!r} ({path})")
        return 0
    enrolled = voiceprints.load_all(folder)
    if not enrolled:
        print(f"no voiceprints in {folder}; add one with `python -m streamer enroll ROLE AUDIO...`")
        return 0
    print(f"voiceprints in {folder}:")
    for role, vp in sorted(enrolled.items()):
        print(f"  {role:<20} {vp.speech_s:6.1f} s of speech  enrolled {vp.created}")
    return 0
