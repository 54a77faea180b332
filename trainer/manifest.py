"""The prepared dataset as training code sees it: ``manifest.jsonl`` and ``splits.json``.

``prepare`` writes both into its output folder; training and evaluation read them back with
read_manifest() and read_splits(). Audio paths are stored relative to that folder (so it can be
moved or copied whole) and resolved to absolute paths on reading.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.errors import UserError

MANIFEST = "manifest.jsonl"
SPLITS = "splits.json"


@dataclass
class Record:
    """One kept utterance."""

    wav_id: str
    text: str
    label: str
    audio: str  # 16 kHz mono PCM16 wav; relative to the output folder on disk, absolute once read
    release: str
    duration: float  # seconds
    annotations: list[list] = field(default_factory=list)  # five [emotion, intensity]
    age: int | None = None
    gender: str = ""
    situation: str = ""


@dataclass
class Splits:
    """Stratified train/val/test wav_ids, and stratified folds that partition train (for stacking)."""

    seed: int
    train: list[str]
    val: list[str]
    test: list[str]
    folds: list[list[str]]


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_manifest(out_dir: Path, records: list[Record]) -> None:
    lines = (json.dumps(asdict(r), ensure_ascii=False) for r in records)
    _write_atomic(out_dir / MANIFEST, "".join(line + "\n" for line in lines))


def write_splits(out_dir: Path, splits: Splits) -> None:
    _write_atomic(out_dir / SPLITS, json.dumps(asdict(splits), ensure_ascii=False, indent=1) + "\n")


def read_manifest(out_dir: str | os.PathLike) -> list[Record]:
    out_dir = Path(out_dir).resolve()
    path = out_dir / MANIFEST
    if not path.is_file():
        raise UserError(f"{path} not found: run `python -m trainer prepare --out {out_dir}` first")
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = Record(**json.loads(line))
            except (ValueError, TypeError) as exc:
                raise UserError(f"{path}:{number}: not a manifest record ({exc})") from exc
            record.audio = str(out_dir / record.audio)
            records.append(record)
    return records


def read_splits(out_dir: str | os.PathLike) -> Splits:
    path = Path(out_dir) / SPLITS
    if not path.is_file():
        raise UserError(f"{path} not found: run `python -m trainer prepare` first")
    try:
        return Splits(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a splits file ({exc})") from exc
