"""Bundle folders: what is saved is what loads, and anything damaged is refused by name."""
import json
from pathlib import Path

import numpy as np
import pytest

from core import bundle as bundle_mod
from core.bundle import BundleError, Sample, load_bundle, save_bundle, verify_bundle
from core.labels import LABELS


class CuePhraseModel:
    """A real, tiny model for bundle mechanics: class scores from cue words seen in fit()."""

    kind = "cue_phrase"
    labels = LABELS

    def __init__(self, cues: dict[str, list[str]] | None = None):
        self.cues = cues or {}

    def fit(self, samples, y):
        self.cues = {label: [] for label in LABELS}
        for sample, label in zip(samples, y):
            self.cues[label].extend(sample.text.split())
        return self

    def predict_proba(self, samples):
        scores = np.array(
            [[1.0 + sum(word in self.cues[label] for word in s.text.split()) for label in LABELS] for s in samples]
        )
        return scores / scores.sum(axis=1, keepdims=True)

    def save(self, folder: Path):
        (folder / "cues.json").write_text(json.dumps(self.cues, ensure_ascii=False))
        return {"words": sum(map(len, self.cues.values()))}

    @classmethod
    def load(cls, folder: Path, device: str = "cpu"):
        return cls(json.loads((folder / "cues.json").read_text()))


@pytest.fixture
def saved(tmp_path, monkeypatch):
    monkeypatch.setitem(bundle_mod.MODEL_KINDS, "cue_phrase", "tests.test_bundle:CuePhraseModel")
    samples = [Sample(text=t) for t in ["화나 짜증", "기뻐 좋아", "회의 세시", "슬퍼 눈물"]]
    model = CuePhraseModel().fit(samples, list(LABELS))
    return save_bundle(tmp_path / "b", {"text": model}, metrics={"acc": 1.0}), samples, model


def test_round_trip_predicts_the_same(saved):
    folder, samples, model = saved
    loaded = load_bundle(folder)
    predictions = loaded.predict(samples)
    expected = model.predict_proba(samples)
    for prediction, row in zip(predictions, expected):
        assert list(prediction.probs.values()) == pytest.approx(list(row))
        assert prediction.used == ["text"] and prediction.audio is None
    assert [p.label for p in predictions] == list(LABELS)
    assert loaded.loaded() == {"text": "cue_phrase", "audio": None, "multimodal": None, "stacker": None}
    meta = verify_bundle(folder)
    assert meta["metrics"] == {"acc": 1.0} and "text/cues.json" in meta["files"]


def test_sample_without_text_gets_no_text_result(saved):
    folder, _, _ = saved
    (prediction,) = load_bundle(folder).predict([Sample(text="  ", audio=np.zeros(16000, np.float32))])
    assert prediction.text is None and prediction.used == []
    assert sum(prediction.probs.values()) == pytest.approx(1.0)


def test_flipped_byte_is_refused_by_name(saved):
    folder, _, _ = saved
    path = folder / "text" / "cues.json"
    data = bytearray(path.read_bytes())
    data[5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"cues\.json fails its sha256"):
        load_bundle(folder)


def test_truncated_and_missing_files_are_refused(saved):
    folder, _, _ = saved
    path = folder / "text" / "cues.json"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(BundleError, match="truncated"):
        verify_bundle(folder)
    path.unlink()
    with pytest.raises(BundleError, match="missing"):
        verify_bundle(folder)


def test_partial_bundle_without_metadata_is_refused(saved):
    folder, _, _ = saved
    (folder / "bundle.json").unlink()
    with pytest.raises(BundleError, match="partly written"):
        load_bundle(folder)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 99}, "format version 99"),
        ({"labels": ["angry", "happy"]}, "labels"),
        ({"models": {"text": {"kind": "mystery", "path": "text"}}}, "unknown kind 'mystery'"),
    ],
)
def test_mismatched_metadata_is_refused(saved, change, message):
    folder, _, _ = saved
    meta = json.loads((folder / "bundle.json").read_text())
    meta.update(change)
    (folder / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=message):
        load_bundle(folder)


def test_failed_save_leaves_the_old_bundle_in_place(saved):
    folder, samples, _ = saved

    class Broken(CuePhraseModel):
        def save(self, folder):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_bundle(folder, {"text": Broken()})
    assert verify_bundle(folder)["metrics"] == {"acc": 1.0}
    assert [p.name for p in folder.parent.iterdir()] == ["b"]  # no temporary folder left


def test_missing_bundle_folder_says_what_to_pass(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
