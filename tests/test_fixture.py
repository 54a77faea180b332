"""make-fixture writes the delivered layout, and prepare round-trips it, the second time from cache."""
import argparse
import csv
import io
import zipfile
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from core.audio import decode as load_audio
from core.errors import UserError
from core.labels import LABELS
from trainer import fixture, prepare
from trainer.aihub import COLUMNS, RELEASES
from trainer.label_rules import decide, normalise_emotion
from trainer.manifest import read_manifest, read_splits

pytestmark = pytest.mark.slow  # synthesises and prepares a fixture dataset

N = 10


def run_prepare(aihub, out, *extra):
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    return prepare.prepare(parser.parse_args(["--aihub", str(aihub), "--out", str(out), *extra]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    aihub = tmp_path_factory.mktemp("fixture") / "aihub"
    return aihub, fixture.write_dataset(aihub, rows_per_label=N, seed=13)


@pytest.fixture(scope="module")
def prepared(dataset, tmp_path_factory):
    aihub, summary = dataset
    out = tmp_path_factory.mktemp("prepared")
    first = run_prepare(aihub, out, "--workers", "2")  # the process pool path
    second = run_prepare(aihub, out, "--workers", "2")
    return out, summary, first, second


def test_command(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    fixture.add_arguments(parser)
    assert fixture.run(parser.parse_args(["--out", str(tmp_path), "--rows-per-label", "1", "--seed", "3"])) == 0
    assert len(list(tmp_path.iterdir())) == 6
    assert "1 per label" in capsys.readouterr().out
    with pytest.raises(UserError, match="--rows-per-label 0"):
        fixture.run(parser.parse_args(["--out", str(tmp_path), "--rows-per-label", "0"]))


def test_layout_is_as_delivered(dataset):
    aihub, summary = dataset
    assert sorted(p.name for p in aihub.iterdir()) == sorted([f"{r}.csv" for r in RELEASES] + [f"{r}.zip" for r in RELEASES])
    rows = []
    for release in RELEASES:
        text = (aihub / f"{release}.csv").read_bytes().decode("cp949")  # strict: fails if not cp949
        table = list(csv.reader(io.StringIO(text, newline="")))
        assert tuple(table[0]) == COLUMNS
        rows += table[1:]
        with zipfile.ZipFile(aihub / f"{release}.zip") as archive:
            name = archive.namelist()[0]
            info = sf.info(io.BytesIO(archive.read(name)))
            assert (info.samplerate, info.channels, info.subtype) == (48_000, 1, "PCM_16")
            assert 1.0 <= info.duration <= 4.0
    assert len(rows) == summary.rows == 4 * N + 3 + 3
    spellings = Counter(cell for r in rows for cell in r[3:13:2])
    assert any(s != s.strip().lower() for s in spellings), "some names in odd case"
    assert "happines:" in spellings


def test_annotators_give_the_intended_label_with_disagreement():
    rows, summary = fixture.build_rows(N, 13)
    disagreeing = 0
    for row in rows:
        if not row.cells:
            continue
        pairs = [(normalise_emotion(row.cells[3 + 2 * i]).emotion, int(row.cells[4 + 2 * i])) for i in range(5)]
        assert decide(pairs, "all7").label == row.intended
        disagreeing += len({e for e, _ in pairs}) > 1
    assert disagreeing > len(rows) // 4


def test_deterministic_from_the_seed():
    a, _ = fixture.build_rows(2, 7)
    b, _ = fixture.build_rows(2, 7)
    c, _ = fixture.build_rows(2, 8)
    assert [r.cells for r in a] == [r.cells for r in b]
    assert all(np.array_equal(x.audio, y.audio) for x, y in zip(a, b) if x.audio is not None)
    assert [r.cells for r in a] != [r.cells for r in c]


def test_both_modalities_carry_the_class():
    """Louder and higher for angry / happiness than for sadness; class words in the text."""
    rng = np.random.default_rng(0)
    rms = {label: np.mean([np.sqrt(np.mean(fixture.synthesise(label, rng) ** 2)) for _ in range(12)]) for label in LABELS}
    assert rms["angry"] > rms["neutral"] > rms["sadness"]
    sentences = {label: [fixture.sentence(label, rng) for _ in range(100)] for label in LABELS}
    hits = {label: np.mean([any(p in s for p in fixture.PHRASES[label]) for s in sentences[label]]) for label in LABELS}
    assert all(0.7 < h < 1.0 for h in hits.values()), hits  # mostly, never always


def test_round_trip_counts(prepared):
    out, summary, report, _ = prepared
    assert report["labels"] == {label: N for label in LABELS}
    assert sorted(report["dropped"]["no_audio"]["ids"]) == sorted(summary.no_audio)
    assert report["wavs_without_row"]["ids"] == summary.wavs_without_row
    assert sum(d["count"] for r, d in report["dropped"].items() if r.startswith("winner_")) == 3
    assert set(report["dropped"]) == {"no_audio", "winner_surprise", "winner_fear", "winner_disgust"}
    records = read_manifest(out)
    assert {r.wav_id: r.label for r in records} == {i: label for label, ids in summary.kept.items() for i in ids}
    for record in records[:5]:
        x = load_audio(record.audio)
        assert record.duration == pytest.approx(x.size / 16_000, abs=1e-3)
        assert sf.info(record.audio).samplerate == 16_000


def test_splits_are_stratified_disjoint_and_folds_partition_train(prepared):
    out, _, _, _ = prepared
    labels = {r.wav_id: r.label for r in read_manifest(out)}
    splits = read_splits(out)
    assert splits.seed == 13
    parts = [set(splits.train), set(splits.val), set(splits.test)]
    assert sum(map(len, parts)) == len(set.union(*parts)) == len(labels)
    for part, share in ((splits.val, 0.1), (splits.test, 0.1)):
        assert Counter(labels[i] for i in part) == {label: round(N * share) for label in LABELS}
    assert sorted(i for fold in splits.folds for i in fold) == sorted(splits.train)
    assert len(splits.folds) == 5
    for fold in splits.folds:
        per_label = Counter(labels[i] for i in fold)
        assert max(per_label.values()) - min(per_label.values()) <= 1


def test_second_run_comes_from_the_cache(prepared):
    out, _, first, second = prepared
    assert (first["audio"]["decoded"], first["audio"]["from_cache"]) == (4 * N, 0)
    assert (second["audio"]["decoded"], second["audio"]["from_cache"]) == (0, 4 * N)
    assert second["labels"] == first["labels"]


def test_a_changed_source_is_decoded_again(dataset, prepared, tmp_path):
    aihub, _ = dataset
    out, summary, _, _ = prepared
    copy = tmp_path / "aihub"
    copy.mkdir()
    for name in RELEASES:
        for suffix in (".csv", ".zip"):
            (copy / f"{name}{suffix}").write_bytes((aihub / f"{name}{suffix}").read_bytes())
    before = read_splits(out)
    changed, lost = summary.kept["sadness"][0], summary.kept["sadness"][3]  # same release
    release = next(r.release for r in read_manifest(out) if r.wav_id == changed)
    (out / "audio" / release / f"{lost}.wav").unlink()
    moved = run_prepare(copy, out, "--workers", "1")
    # ZIP members are keyed by content (CRC), not path: only the deleted clip is decoded
    assert moved["audio"]["decoded"] == 1

    zip_path = copy / f"{release}.zip"
    with zipfile.ZipFile(zip_path) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members[f"{changed}.wav"] = fixture._wav_bytes(np.full(fixture.RATE, 0.1, np.float32))
    with zipfile.ZipFile(zip_path, "w") as target:  # replaced in place, as a re-download would
        for name, data in members.items():
            target.writestr(name, data)
    report = run_prepare(copy, out, "--workers", "1")
    assert (report["audio"]["decoded"], report["audio"]["from_cache"]) == (1, 4 * N - 1)
    assert next(r for r in read_manifest(out) if r.wav_id == changed).duration == 1.0
    assert read_splits(out) == before
