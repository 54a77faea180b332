"""prepare on a fixture copy with every kind of bad input: counted, or a clear error for fatal ones."""
import argparse
import csv
import io
import json
import zipfile

import numpy as np
import pytest

from core.errors import UserError
from trainer import prepare
from trainer.__main__ import main
from trainer.aihub import COLUMNS
from trainer.fixture import RATE, _wav_bytes, write_dataset
from trainer.label_rules import decide
from trainer.manifest import read_manifest, read_splits


def run_prepare(aihub, out, *extra):
    parser = argparse.ArgumentParser()
    prepare.add_arguments(parser)
    return prepare.prepare(parser.parse_args(["--aihub", str(aihub), "--out", str(out), "--workers", "1", *extra]))


def read_rows(path):
    return list(csv.reader(io.StringIO(path.read_bytes().decode("cp949"), newline="")))


def write_rows(path, rows, encoding="cp949"):
    text = io.StringIO(newline="")
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    path.write_bytes(text.getvalue().encode(encoding))


def add_wavs(zip_path, members):
    with zipfile.ZipFile(zip_path, "a") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def row(wav_id, text="오늘 너무 기뻐.", pairs=None):
    pairs = pairs or [("happiness", "2")] * 5
    return [wav_id, text, "happiness", *[c for p in pairs for c in p], "30", "female"]


TONE = _wav_bytes(np.sin(np.arange(RATE) * 2 * np.pi * 200 / RATE).astype(np.float32) * 0.3)
EMPTY = _wav_bytes(np.zeros(0, np.float32))


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """The fixture with one of each bad row added; returns (aihub dir, fixture summary, report)."""
    root = tmp_path_factory.mktemp("broken")
    aihub = root / "aihub"
    summary = write_dataset(aihub, rows_per_label=3, seed=5)
    first = read_rows(aihub / "4차년도.csv")
    second = read_rows(aihub / "5차년도.csv")
    bad = [
        row("emptywav"), row("zerobytes"), row("corrupt"), row("emptytext", text="  "),
        row("unknownemo", pairs=[("happiness", "2")] * 4 + [("joy", "2")]),
        row("badint3", pairs=[("happiness", "3")] + [("happiness", "2")] * 4),
        row("badintx", pairs=[("happiness", "x")] + [("happiness", "2")] * 4),
        row("badintneg", pairs=[("happiness", "-1")] + [("happiness", "2")] * 4),
        row("tied", pairs=[("sadness", "2"), ("angry", "2"), ("neutral", "0"), ("neutral", "0"), ("neutral", "0")]),
        row("", text="빈 아이디"),
        row("toolong") + ["extra"],
        first[1],  # duplicate within the release
    ]
    write_rows(aihub / "4차년도.csv", first + bad)
    write_rows(aihub / "5차년도.csv", second + [first[2]])  # duplicate across releases
    add_wavs(aihub / "4차년도.zip", {
        "emptywav.wav": EMPTY, "zerobytes.wav": b"", "corrupt.wav": b"RIFF\x10\x00\x00\x00WAVEjunk",
        **{f"{i}.wav": TONE for i in ("emptytext", "unknownemo", "badint3", "badintx", "badintneg", "tied", "toolong")},
    })
    report = run_prepare(aihub, root / "out")
    return aihub, summary, report, root / "out", first


def test_every_bad_row_is_counted_with_its_id(broken):
    _, summary, report, _, first = broken
    dropped = report["dropped"]
    assert dropped["empty_audio"]["ids"] == ["emptywav", "zerobytes"]
    assert dropped["unreadable_audio"]["ids"] == ["corrupt"]
    assert "corrupt.wav" in dropped["unreadable_audio"]["details"]["corrupt"]
    assert dropped["empty_text"]["ids"] == ["emptytext"]
    assert dropped["unknown_emotion"] == {"count": 1, "ids": ["unknownemo"], "details": {"unknownemo": "'joy'"}}
    assert dropped["bad_intensity"]["ids"] == ["badint3", "badintx", "badintneg"]
    assert dropped["duplicate_wav_id"]["ids"] == [first[1][0], first[2][0]]
    assert "5차년도" in dropped["duplicate_wav_id"]["details"][first[2][0]]
    assert dropped["missing_wav_id"]["count"] == 1
    assert dropped["malformed_row"]["ids"] == ["toolong"]
    assert sorted(dropped["no_audio"]["ids"]) == sorted(summary.no_audio)
    assert report["wavs_without_row"]["ids"] == summary.wavs_without_row
    assert {r: d["ids"][0] for r, d in dropped.items() if r.startswith("winner_")} == {
        f"winner_{e}": i for i, e in summary.other_emotions.items()
    }
    assert report["ties_unresolved"] == {
        "count": 1, "ids": ["tied"], "rule": "kept with the tied emotion chosen by the lowest-numbered annotator"}


def test_good_rows_survive_next_to_bad_ones(broken):
    _, summary, report, out, _ = broken
    records = read_manifest(out)
    by_id = {r.wav_id: r for r in records}
    assert by_id["tied"].label == "sadness"
    assert report["kept"] == len(records) == 4 * 3 + 1
    assert report["labels"] == {"angry": 3, "happiness": 3, "neutral": 3, "sadness": 4}
    assert report["releases"]["4차년도"]["encoding"] == "cp949"
    assert "NOT speaker-independent" in report["speaker_independence"]
    split_ids = set(read_splits(out).train + read_splits(out).val + read_splits(out).test)
    assert split_ids == set(by_id)


def test_the_terminal_summary_states_drops_and_speakers(broken, capsys):
    aihub, _, _, out, _ = broken
    run_prepare(aihub, out)
    printed = capsys.readouterr().out
    assert "4차년도.csv = cp949" in printed
    assert "bad_intensity" in printed and "no_audio" in printed
    assert "no speaker ids" in printed


def test_names_in_odd_case_and_truncations_are_counted(tmp_path):
    aihub = tmp_path / "aihub"
    aihub.mkdir()
    pairs = [("Happiness", "2"), (" happiness", "1"), ("HAPPINESS", "2"), ("happines:", "2"), ("Neutral", "")]
    write_rows(aihub / "4차년도.csv", [list(COLUMNS), row("a", pairs=pairs)], "utf-8-sig")
    add_wavs(aihub / "4차년도.zip", {"a.wav": TONE})
    report = run_prepare(aihub, tmp_path / "out")
    assert report["labels"]["happiness"] == 1
    assert report["names_mapped"] == {"happines: -> happiness": 1}
    assert report["releases"]["4차년도"]["encoding"] == "utf-8-sig"
    assert report["releases_missing"] == ["5차년도", "5차년도_2차"]
    (record,) = read_manifest(tmp_path / "out")
    assert record.annotations == [["happiness", 2], ["happiness", 1], ["happiness", 2], ["happiness", 2], ["neutral", 0]]
    assert (record.age, record.gender, record.situation, record.duration) == (30, "female", "happiness", 1.0)


@pytest.mark.parametrize("rule", ["majority", "all7"])
def test_other_label_rules(broken, tmp_path, rule):
    aihub, summary, _, _, _ = broken
    report = run_prepare(aihub, tmp_path / "out", "--label-rule", rule)
    records = read_manifest(tmp_path / "out")
    assert report["label_rule"] == rule
    for record in records:
        assert decide([tuple(a) for a in record.annotations], rule).label == record.label
    if rule == "all7":
        assert {r.wav_id: r.label for r in records if r.wav_id in summary.other_emotions} == summary.other_emotions
        assert "fear" in report["labels"]
    else:
        assert all(sum(e == r.label for e, _ in r.annotations) >= 3 for r in records)


def test_fatal_inputs_are_one_line_errors(broken, tmp_path, capsys):
    aihub, _, _, _, _ = broken
    assert main(["prepare", "--aihub", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no AI Hub release found"):
        run_prepare(tmp_path / "empty", tmp_path / "o")

    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "4차년도.zip").write_bytes((aihub / "4차년도.zip").read_bytes())
    (copy / "4차년도.csv").write_bytes((aihub / "4차년도.csv").read_bytes().decode("cp949").encode("utf-16"))
    with pytest.raises(UserError, match=r"4차년도\.csv: cannot decode"):
        run_prepare(copy, tmp_path / "o")

    rows = read_rows(aihub / "4차년도.csv")
    rows[0] = [c.replace("성별", "gender") for c in rows[0]]
    write_rows(copy / "4차년도.csv", rows)
    with pytest.raises(UserError, match=r"missing columns \['성별'\], unexpected columns \['gender'\]"):
        run_prepare(copy, tmp_path / "o")



@pytest.mark.parametrize(
    "flags,message",
    [(["--min-agreement", "6"], "min-agreement"), (["--val", "0.5", "--test", "0.5"], "--val"),
     (["--folds", "1"], "--folds"), (["--workers", "0"], "--workers")],
)
def test_bad_options(tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        run_prepare(tmp_path, tmp_path / "o", *flags)


def test_report_is_valid_json_with_options(broken):
    _, _, _, out, _ = broken
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["options"]["seed"] == 13 and report["label_rule"] == "seed"
