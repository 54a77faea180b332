"""`trainer predict` end to end: the real default bundle, real Whisper on real speech, no network."""
import json
import socket

import numpy as np
import pytest
import soundfile as sf

from core.labels import LABELS
from testsupport.speech import (
    SENTENCES,
    require_espeak,
    speak,
    synthesize,
    word_error_rate,
)
from trainer.__main__ import main


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection off this machine fails the test: predict must work offline."""
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"predict tried to reach the network: {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def run_predict(tmp_path, lines, *extra):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    code = main(["predict", "--bundle", "default", "--input", str(src), "--output", str(out), *extra])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    return code, rows


def check_prediction(row):
    assert set(row) == {"id", "label", "probs", "text", "audio", "multimodal", "used", "transcript", "speaker"}
    assert list(row["probs"]) == list(LABELS) and sum(row["probs"].values()) == pytest.approx(1.0)
    assert row["label"] == max(row["probs"], key=row["probs"].get)
    assert row["used"] == ["text"] and row["audio"] is None and row["multimodal"] is None
    assert row["text"]["probs"] == pytest.approx(row["probs"])


def test_text_lines(tmp_path, capsys):
    lines = [
        {"id": "a1", "text": "몇 번을 말했는데 또 똑같은 실수를 하면 어떡해 진짜 화나"},
        {"id": 2, "text": "오랫동안 기다리던 합격 소식을 들어서 너무 기뻐요"},
        "\n",  # blank lines are skipped, not errors
        {"id": "a3", "text": "  키우던 고양이가 하늘나라로 가서 너무 슬퍼요  "},
    ]
    code, rows = run_predict(tmp_path, lines)
    assert code == 0
    assert [r["id"] for r in rows] == ["a1", 2, "a3"]
    for row in rows:
        check_prediction(row)
        assert row["transcript"] is None
    assert [r["label"] for r in rows] == ["angry", "happiness", "sadness"]
    assert "predicted 3 of 3 lines" in capsys.readouterr().err


def test_bad_lines_become_error_lines_and_the_run_goes_on(tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00garbage")
    lines = [
        "{not json\n",
        {"text": "아이디가 없어요"},
        {"id": "no-input"},
        {"id": "missing-audio", "audio": "nowhere.wav"},
        {"id": "broken-audio", "audio": "broken.wav"},
        "[1, 2]\n",
        {"id": "number-text", "text": 5},
        {"id": "ok", "text": "다음 주 화요일 오전 열 시에 치과 예약이 있어요"},
    ]
    code, rows = run_predict(tmp_path, lines)
    assert code == 0  # one line could be predicted
    assert len(rows) == len(lines)
    errors = {r["line"]: r["error"] for r in rows if "error" in r}
    assert sorted(errors) == [1, 2, 3, 4, 5, 6, 7]
    assert "not valid JSON" in errors[1]
    assert 'no "id"' in errors[2] and rows[1]["id"] is None
    assert 'neither "text" nor "audio"' in errors[3] and rows[2]["id"] == "no-input"
    assert str(tmp_path / "nowhere.wav") in errors[4] and "does not exist" in errors[4]
    assert "cannot open" in errors[5] and "broken.wav" in errors[5] and "FFmpeg can decode" in errors[5]
    assert "not an object" in errors[6]
    assert '"text" must be a string' in errors[7]
    check_prediction(rows[-1])
    assert rows[-1]["label"] == "neutral"
    err = capsys.readouterr().err
    assert "predicted 1 of 8 lines" in err and "7 lines have an \"error\"" in err


def test_nothing_predictable_exits_1(tmp_path):
    code, rows = run_predict(tmp_path, [{"id": 1}, "oops\n"])
    assert code == 1 and len(rows) == 2 and all("error" in r for r in rows)


def test_command_problems_exit_2_with_one_line(tmp_path, capsys):
    out = str(tmp_path / "out.jsonl")
    assert main(["predict", "--input", str(tmp_path / "none.jsonl"), "--output", out]) == 2
    assert "none.jsonl does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert main(["predict", "--input", str(empty), "--output", out]) == 2
    assert "has no lines" in capsys.readouterr().err
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "안녕"}\n')
    assert main(["predict", "--bundle", str(tmp_path / "nobundle"), "--input", str(src), "--output", out]) == 2
    assert "nobundle does not exist" in capsys.readouterr().err
    assert main(["predict", "--input", str(src), "--output", str(src)]) == 2
    assert "same file" in capsys.readouterr().err
    config = tmp_path / "c.toml"
    config.write_text("[asr]\nlangauge = 'en'\n")
    assert main(["predict", "--config", str(config), "--input", str(src), "--output", out]) == 2
    assert "asr.langauge" in capsys.readouterr().err


@pytest.mark.slow
def test_audio_lines_are_transcribed_then_classified(tmp_path, monkeypatch):
    require_espeak()
    sentence = SENTENCES[2]  # "I really enjoyed the concert in the park yesterday."
    speak(sentence, tmp_path / "clips" / "enjoy.wav")
    # the same speech as 48 kHz stereo FLAC: predict must decode and resample any format
    speech = synthesize(sentence)
    import soxr

    stereo = np.stack([soxr.resample(speech, 16_000, 48_000)] * 2, axis=1)
    sf.write(tmp_path / "clips" / "enjoy.flac", stereo, 48_000)
    sf.write(tmp_path / "clips" / "silence.wav", np.zeros(32_000, np.float32), 16_000, subtype="PCM_16")
    lines = [
        {"id": "wav", "audio": "clips/enjoy.wav"},
        {"id": "flac", "audio": "clips/enjoy.flac"},
        {"id": "silence", "audio": "clips/silence.wav"},
        {"id": "both", "text": "오늘 정말 기분 최고야", "audio": "clips/enjoy.wav"},
    ]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # audio paths are relative to the input file, not the current folder
    code, rows = run_predict(tmp_path, lines, "--language", "en")
    assert code == 0
    for row in rows[:2]:
        check_prediction(row)
        assert word_error_rate(sentence, row["transcript"]) <= 0.25, row["transcript"]
    assert "no speech was recognised" in rows[2]["error"] and rows[2]["transcript"] == ""
    check_prediction(rows[3])
    assert rows[3]["transcript"] is None and rows[3]["label"] == "happiness"  # the given text, not ASR


@pytest.mark.slow
def test_a_megabyte_of_text_is_cut_with_a_note_and_the_run_goes_on(tmp_path):
    """Issue 13: one 1 MB line used to take minutes and hold up the whole run."""
    import time

    from trainer.predict import MAX_TEXT_CHARS

    src = tmp_path / "in.jsonl"
    lines = [{"id": "huge", "text": "정말 화가 나. " * 100_000}, {"id": "after", "text": "오늘 너무 기뻐요"}]
    src.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    started = time.perf_counter()
    assert main(["predict", "--bundle", "default", "--input", str(src), "--output", str(out)]) == 0
    assert time.perf_counter() - started < 120  # a generous bound: minutes before the cap
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["huge", "after"] and all("error" not in r for r in rows)
    assert rows[0]["notes"] == [f"text cut from {len(lines[0]['text'].strip())} to its first {MAX_TEXT_CHARS} characters"]
    assert "notes" not in rows[1]


@pytest.mark.slow
def test_nan_samples_in_an_audio_line_are_read_as_silence_with_a_note(tmp_path):
    require_espeak()
    wave = synthesize(SENTENCES[0])
    wave[1000:1100] = np.nan
    sf.write(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "n", "audio": "nan.wav"}) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["predict", "--bundle", "default", "--input", str(src), "--output", str(out), "--language", "en"]) == 0
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert "error" not in row and row["notes"] == [f"100 NaN or infinite samples in {tmp_path / 'nan.wav'} were read as silence"]
    assert word_error_rate(SENTENCES[0], row["transcript"]) < 0.3


def test_audio_lines_carry_their_speaker_and_text_lines_none(tmp_path):
    from testsupport.conversation import VOICES, write
    from testsupport.speech import trim

    require_espeak()
    lines = []
    for i, sentence in enumerate(SENTENCES[:4]):
        write(trim(synthesize(sentence, VOICES[i % 2])), tmp_path / f"{i}.wav")
        lines.append({"id": f"a{i}", "audio": f"{i}.wav"})
    lines.append({"id": "t", "text": "오늘 정말 기뻐요"})
    code, rows = run_predict(tmp_path, lines, "--language", "en")
    assert code == 0
    assert [r["speaker"]["id"] for r in rows[:4]] == ["S1", "S2", "S1", "S2"]
    assert rows[2]["speaker"]["similarity"] > 0.75 and rows[4]["speaker"] is None
    code, rows = run_predict(tmp_path, lines, "--language", "en", "--speakers", "0")
    assert code == 0 and all(r["speaker"] is None for r in rows)
