"""Speakers through the commands a user runs: `analyze`, `run` (live pace, recorded, re-analysed),
with real Whisper on espeak-ng conversations of two voices (testsupport/conversation.py).
Slow: each command loads Whisper."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import voiceprints
from streamer.__main__ import main
from testsupport.conversation import VOICES, alternating, conversation, stereo, write
from testsupport.speech import SAMPLE_RATE, SENTENCES, require_espeak, synthesize, trim

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """Six turns, voices 0 and 1 alternating, 1 s apart; and the truth."""
    require_espeak()
    audio, truth = alternating(6, gap_s=1.0)
    return write(audio, tmp_path_factory.mktemp("talk") / "talk.wav"), truth


def analyze(tmp_path: Path, audio: Path, *extra: str) -> tuple[int, list[dict]]:
    out = tmp_path / f"{audio.stem}.jsonl"
    code = main(["analyze", str(audio), "--out", str(out), "--language", "en", *extra])
    return code, [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def speaker_of(rows: list[dict], truth) -> list[tuple[str, int]]:
    """(published id, true speaker) of each row, by the turn its middle falls in."""
    pairs = []
    for row in rows:
        mid = (row["start"] + row["end"]) / 2
        turn = min(truth, key=lambda t: 0 if t.start <= mid <= t.end else min(abs(mid - t.start), abs(mid - t.end)))
        pairs.append((row["speaker"]["id"], turn.speaker))
    return pairs


def test_analyze_ids_follow_the_voices_and_enrolment_gives_roles(talk, tmp_path):
    path, truth = talk
    code, rows = analyze(tmp_path, path)
    assert code == 0 and len(rows) == 6
    assert [r["speaker"]["id"] for r in rows] == ["S1", "S2", "S1", "S2", "S1", "S2"]
    assert all(r["speaker"]["role"] is None for r in rows)
    assert all(r["speaker"]["similarity"] > 0.75 for r in rows[2:])

    # Enroll voice 1 (other sentences than the talk's) as the counselor: voice 0 becomes the client.
    folder = tmp_path / "vp"
    me = write(np.concatenate([trim(synthesize(s, VOICES[1])) for s in ("Good morning, how have you been?",
                                                                         "Tell me more about that week.")]), tmp_path / "me.wav")
    assert main(["enroll", "counselor", str(me), "--voiceprints", str(folder)]) == 0
    code, rows = analyze(tmp_path, path, "--voiceprints", str(folder))
    assert code == 0
    roles = {true: role for (_id, true), role in zip(speaker_of(rows, truth), [r["speaker"]["role"] for r in rows])}
    assert roles == {1: "counselor", 0: "client"}

    code, rows = analyze(tmp_path, path, "--speakers", "0")
    assert code == 0 and len(rows) == 6 and all(r["speaker"] is None for r in rows)


def test_analyze_splits_a_turn_taken_without_a_pause(tmp_path):
    require_espeak()
    audio, truth = conversation([(0, SENTENCES[0]), (1, SENTENCES[1]), (0, SENTENCES[3])], gap_s=0.0)
    code, rows = analyze(tmp_path, write(audio, tmp_path / "nopause.wav"))
    assert code == 0
    assert [r["speaker"]["id"] for r in rows] == ["S1", "S2", "S1"]
    assert [r["utterance_id"] for r in rows] == [1, 2, 3]
    assert "call me" in rows[1]["text"].lower() and "milk" in rows[2]["text"].lower()


def test_analyze_split_channels_by_channel_and_refuses_a_mono_file(talk, tmp_path, capsys):
    require_espeak()
    a, b = (trim(synthesize(SENTENCES[i], VOICES[i])) for i in (0, 1))
    gap = np.zeros(SAMPLE_RATE, np.float32)
    ch0 = np.concatenate([gap, a, gap, np.zeros(len(b), np.float32), gap])
    ch1 = np.concatenate([gap, np.zeros(len(a), np.float32), gap, b, gap])
    two_mics = tmp_path / "two.wav"
    import soundfile as sf

    sf.write(two_mics, stereo((ch0, ch1), bleed_db=-15.0), SAMPLE_RATE, subtype="PCM_16")
    config = tmp_path / "c.toml"
    config.write_text('[speakers]\nchannel_roles = ["counselor", "client"]\n')
    code, rows = analyze(tmp_path, two_mics, "--channels", "split", "--config", str(config))
    assert code == 0
    assert [(r["speaker"]["id"], r["speaker"]["role"], r["speaker"]["similarity"]) for r in rows] == [
        ("S1", "counselor", None), ("S2", "client", None)]
    code, _rows = analyze(tmp_path, talk[0], "--channels", "split")
    assert code == 2 and "has 1 channel(s)" in capsys.readouterr().err


def test_a_damaged_voiceprint_stops_the_start_naming_it(talk, tmp_path, capsys):
    folder = tmp_path / "vp"
    folder.mkdir()
    bad = folder / f"counselor{voiceprints.SUFFIX}"
    bad.write_text('{"role": "counselor", "model": "resemblyzer-ge2e", "embedding": [1, 2, 3]}')
    code, rows = analyze(tmp_path, talk[0], "--voiceprints", str(folder))
    assert code == 2 and rows == []
    assert str(bad) in capsys.readouterr().err


def test_run_live_partials_and_utterances_carry_speakers_and_the_recording_no_voiceprint(tmp_path):
    """`run` at real time (partials) with a voiceprint, recorded; then the recording re-analysed."""
    require_espeak()
    audio, truth = alternating(4, gap_s=1.0)
    path = write(audio, tmp_path / "live.wav")
    folder = tmp_path / "vp"
    vp = voiceprints.new("counselor", np.full(256, 1 / 16, np.float32), 10.0)  # matches no espeak voice
    voiceprints.save(folder, vp)
    command = [sys.executable, "-m", "streamer", "run", "--source", f"file:{path}", "--language", "en", "--port", "0",
               "--record", str(tmp_path / "rec"), "--voiceprints", str(folder), "--speakers", "3", "--exit-at-end"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)
    (session,) = (tmp_path / "rec").iterdir()
    messages = [json.loads(line) for line in (session / "feed.jsonl").read_text().splitlines()]
    utterances = [m for m in messages if m["type"] == "utterance"]
    partials = [m for m in messages if m["type"] == "partial"]
    assert partials and all("speaker" in p for p in partials)
    assert any(p["speaker"] is not None for p in partials)
    assert [u["speaker"]["id"] for u in utterances] == ["S1", "S2", "S1", "S2"]
    # The enrolled voice never spoke, so nobody is "client" by elimination: roles stay null.
    assert all(u["speaker"]["role"] is None for u in utterances)
    recorded = (session / "feed.jsonl").read_text() + (session / "meta.json").read_text()
    assert not re.search(r"(-?\d\.\d+,\s*){50}", recorded)  # no embedding written anywhere
    assert str(round(float(vp.embedding[0]), 6)) not in recorded

    # Re-analysis of the recording gives the same speakers.
    command = [sys.executable, "-m", "streamer", "run", "--source", f"session:{session}", "--fast", "--language", "en",
               "--port", "0", "--record", str(tmp_path / "again"), "--exit-at-end"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=300)
    (again,) = (tmp_path / "again").iterdir()
    redone = [json.loads(line) for line in (again / "feed.jsonl").read_text().splitlines()]
    assert [m["speaker"]["id"] for m in redone if m["type"] == "utterance"] == ["S1", "S2", "S1", "S2"]
