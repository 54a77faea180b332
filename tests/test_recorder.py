"""Recorded sessions: written as they go, readable after the writer dies at any point."""
import json
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf

from core.errors import UserError
from streamer import feed, recorder


def tone(seconds, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_a_closed_recording_is_a_standard_wav(tmp_path):
    writer = recorder.WavWriter(tmp_path / "a.wav")
    audio = tone(1.3)
    for block in np.array_split(audio, 40):
        writer.write(block)
    writer.close()
    data, rate = sf.read(tmp_path / "a.wav", dtype="float32")
    assert rate == 16000 and len(data) == len(audio)
    np.testing.assert_allclose(data, audio, atol=1 / 32768)


def test_pcm16_input_survives_the_round_trip_exactly(tmp_path):
    pcm = np.array([-32768, -1, 0, 1, 32767], dtype="<i2")
    writer = recorder.WavWriter(tmp_path / "a.wav")
    writer.write(pcm.astype(np.float32) / 32768.0)
    writer.close()
    np.testing.assert_array_equal(recorder.pcm16(tmp_path / "a.wav"), pcm)


def test_a_file_cut_off_mid_write_is_read_from_its_size(tmp_path):
    """What kill -9 leaves: a header up to SYNC_S behind, or never updated at all."""
    path = tmp_path / "a.wav"
    writer = recorder.WavWriter(path)
    writer.write(tone(2.0))
    writer.write(tone(0.3))  # less than SYNC_S after the last sync: the header does not know it
    writer._file.flush()
    crashed = tmp_path / "crashed.wav"
    shutil.copy(path, crashed)
    header_size = struct.unpack("<I", crashed.read_bytes()[40:44])[0]
    assert header_size < 2.3 * 32000  # the stale header this test is about
    with open(crashed, "ab") as f:
        f.write(b"\x01")  # and half a sample
    assert len(recorder.read_audio(crashed)) == int(2.3 * 16000)
    from streamer.ranges import WavFile

    served = WavFile.open(crashed)
    repaired = served.read(0, served.size - 1)
    assert struct.unpack("<I", repaired[40:44])[0] == int(2.3 * 16000) * 2
    assert len(repaired) == 44 + int(2.3 * 16000) * 2
    never_synced = tmp_path / "zero.wav"
    never_synced.write_bytes(recorder.wav_header(0) + np.zeros(100, "<i2").tobytes())
    assert len(recorder.read_audio(never_synced)) == 100


def test_not_a_recording_is_named(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"hello")
    with pytest.raises(UserError, match="not a WAV"):
        recorder.read_audio(tmp_path / "x.wav")
    sf.write(tmp_path / "st.wav", np.zeros((100, 2)), 44100)
    with pytest.raises(UserError, match="16 kHz mono PCM16"):
        recorder.read_audio(tmp_path / "st.wav")


MODELS = {"asr": "whisper small int8", "text": "e5_head", "audio": None, "multimodal": None, "stacker": None}


def make_session(root, messages=3):
    log = feed.SessionLog("20260101-120000-0001")
    rec = recorder.Recorder(root, log, {"source": "mic", "models": MODELS})
    rec.write_audio(tone(1.0))
    for i in range(messages):
        log.publish("utterance", {"utterance_id": i + 1, "text": f"말 {i}"})
    return log, rec


def test_feed_lines_are_on_disk_as_soon_as_published(tmp_path):
    log, rec = make_session(tmp_path)
    lines = (rec.folder / "feed.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]
    assert json.loads(lines[0])["text"] == "말 0"  # Korean kept readable
    rec.close({"utterances": 3, "duration": 1.0})
    meta = recorder.read_meta(rec.folder)
    assert meta["id"] == log.session_id and meta["source"] == "mic" and meta["end"]["utterances"] == 3


def test_a_truncated_last_line_is_left_out_but_damage_elsewhere_is_named(tmp_path):
    _, rec = make_session(tmp_path)
    path = rec.folder / "feed.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"type": "utterance", "seq": 4, "te')  # the write a crash interrupted
    assert [m["seq"] for m in recorder.read_feed(rec.folder)] == [1, 2, 3]
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([lines[0], "garbage", *lines[1:]]), encoding="utf-8")
    with pytest.raises(UserError, match="line 2"):
        recorder.read_feed(rec.folder)


def test_sessions_are_listed_newest_first_with_what_is_known(tmp_path):
    _, rec = make_session(tmp_path)
    rec.close({"utterances": 3, "duration": 1.0})
    crashed = feed.SessionLog("20260102-080000-0002")
    rec2 = recorder.Recorder(tmp_path, crashed, {"source": "mic"})
    rec2.write_audio(tone(2.0))
    crashed.publish("utterance", {"utterance_id": 1})
    rec2.audio._file.flush()  # never closed: no end summary in meta.json
    (tmp_path / "not-a-session").mkdir()
    listed = recorder.list_sessions(tmp_path)
    assert [s["id"] for s in listed] == ["20260102-080000-0002", "20260101-120000-0001"]
    assert listed[0]["duration"] == 2.0 and listed[0]["utterances"] == 1
    assert listed[0]["models"] is None  # a meta.json without models: unknown, not guessed
    assert listed[1]["duration"] == 1.0 and listed[1]["utterances"] == 3
    assert listed[1]["models"] == MODELS  # the dashboard's replay shows which models were loaded


def test_an_existing_session_folder_is_never_overwritten(tmp_path):
    make_session(tmp_path)
    with pytest.raises(UserError, match="already exists"):
        make_session(tmp_path)
