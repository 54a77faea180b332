"""Fixtures several test files share. Imports stay inside the fixtures, so collecting the fast tier
(`pytest -m "not slow"`) loads no audio or model stack."""
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prepared_fixture(tmp_path_factory) -> Path:
    """`make-fixture` (40 rows per label) then `prepare`: the folder holding manifest.jsonl and splits.json."""
    from trainer.__main__ import main

    root = tmp_path_factory.mktemp("fixture")
    assert main(["make-fixture", "--out", str(root / "aihub"), "--rows-per-label", "40"]) == 0
    assert main(["prepare", "--aihub", str(root / "aihub"), "--out", str(root / "prep"), "--workers", "1"]) == 0
    return root / "prep"


def split_samples(prep: Path, audio: bool) -> dict:
    """train / val / test as (samples, labels), with each clip's audio loaded when `audio`."""
    from core.audio import decode
    from core.models import Sample
    from trainer.manifest import read_manifest, read_splits

    records = {r.wav_id: r for r in read_manifest(prep)}
    splits = read_splits(prep)

    def part(ids):
        samples = [Sample(text=records[i].text, audio=decode(records[i].audio) if audio else None, id=i) for i in ids]
        return samples, [records[i].label for i in ids]

    return {"train": part(splits.train), "val": part(splits.val), "test": part(splits.test)}


@pytest.fixture(autouse=True)
def private_data_home(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's own voiceprints (~/.local/share/...): the default
    voiceprints folder of every test, and of the daemons it starts, is a fresh temporary one."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))
