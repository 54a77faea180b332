"""Fixtures several test files share."""
from pathlib import Path

import pytest

from trainer.__main__ import main
from core.audio import decode as load_audio
from core.bundle import Sample
from trainer.manifest import read_manifest, read_splits


@pytest.fixture(scope="session")
def prepared_fixture(tmp_path_factory) -> Path:
    """`make-fixture` (40 rows per label) then `prepare`: the folder holding manifest.jsonl and splits.json."""
    root = tmp_path_factory.mktemp("fixture")
    assert main(["make-fixture", "--out", str(root / "aihub"), "--rows-per-label", "40"]) == 0
    assert main(["prepare", "--aihub", str(root / "aihub"), "--out", str(root / "prep"), "--workers", "1"]) == 0
    return root / "prep"


def split_samples(prep: Path, audio: bool) -> dict[str, tuple[list[Sample], list[str]]]:
    """train / val / test as (samples, labels), with each clip's audio loaded when `audio`."""
    records = {r.wav_id: r for r in read_manifest(prep)}
    splits = read_splits(prep)

    def part(ids):
        samples = [Sample(text=records[i].text, audio=load_audio(records[i].audio) if audio else None, id=i) for i in ids]
        return samples, [records[i].label for i in ids]

    return {"train": part(splits.train), "val": part(splits.val), "test": part(splits.test)}
