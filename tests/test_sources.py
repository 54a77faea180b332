"""Sources: real files through PyAV, the bounded frame queue, this machine's (absent) microphone."""
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streamer import devices, recorder, sources
from streamer.devices import InputDevice, MicUnavailable

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def tone(seconds, rate, freq=440.0, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(audio):
    spectrum = np.abs(np.fft.rfft(audio))
    return np.fft.rfftfreq(len(audio), 1 / RATE)[np.argmax(spectrum)]


async def play(source, max_seconds=60.0):
    """Run a source to its end and collect what it queued, as the session's segmenter would."""
    frames = sources.FrameQueue(max_seconds)
    reports = []
    runner = asyncio.create_task(source.run(frames, lambda code, message: reports.append((code, message))))
    runner.add_done_callback(lambda _: frames.close())
    blocks = []
    while (block := await frames.get(RATE)) is not None:
        blocks.append(block)
    await runner
    return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), reports, frames


def test_8_khz_stereo_is_downmixed_and_resampled(tmp_path):
    left, right = tone(2.0, 8000, 440), tone(2.0, 8000, 440)
    sf.write(tmp_path / "st8k.wav", np.stack([left, right], axis=1), 8000, subtype="PCM_16")
    audio = np.concatenate(list(sources.decode_file(tmp_path / "st8k.wav")))
    assert abs(len(audio) - 2 * RATE) <= 64
    assert abs(dominant_hz(audio) - 440) < 2
    assert 0.45 < np.abs(audio).max() < 0.55  # averaged, as the trainer does: not louder than either channel
    sf.write(tmp_path / "half.wav", np.stack([left, np.zeros_like(right)], axis=1), 8000, subtype="PCM_16")
    half = np.concatenate(list(sources.decode_file(tmp_path / "half.wav")))
    assert 0.22 < np.abs(half).max() < 0.28


def test_48_khz_flac_arrives_in_second_sized_chunks(tmp_path):
    sf.write(tmp_path / "a.flac", tone(3.5, 48000, 1000), 48000)
    chunks = list(sources.decode_file(tmp_path / "a.flac"))
    assert len(chunks) >= 3 and all(c.dtype == np.float32 for c in chunks)
    assert abs(sum(map(len, chunks)) - 3.5 * RATE) <= 64
    assert abs(dominant_hz(np.concatenate(chunks)) - 1000) < 2


@pytest.mark.asyncio
async def test_nan_samples_are_reported_once_and_played_as_silence(tmp_path):
    audio = tone(2.0, RATE)
    audio[8000:9000] = np.nan
    audio[20000] = np.inf
    sf.write(tmp_path / "nan.wav", audio, RATE, subtype="FLOAT")
    played, reports, _ = await play(sources.file_source(str(tmp_path / "nan.wav"), realtime=False, block=512))
    assert np.isfinite(played).all() and len(played) == len(audio)
    assert np.all(played[8010:8990] == 0.0)
    assert [code for code, _ in reports] == ["bad_audio"]
    assert "0.50 s" in reports[0][1] and "silence" in reports[0][1]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(b"RIFF\x24\x00\x00\x00WAVEjunkjunkjunk" * 4, "cannot open"), (b"just some text\n" * 100, "cannot open")],
)
def test_an_unreadable_file_is_a_source_error_that_says_what_to_give(tmp_path, content, fragment):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(sources.SourceError, match=fragment) as err:
        list(sources.decode_file(path))
    assert str(path) in str(err.value) and "FFmpeg" in str(err.value)


def test_a_file_without_audio_is_named(tmp_path):
    import av

    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(sources.SourceError, match="no audio stream"):
        list(sources.decode_file(path))


@pytest.mark.asyncio
async def test_realtime_playback_follows_the_clock_and_fast_does_not(tmp_path):
    sf.write(tmp_path / "a.wav", tone(0.6, RATE), RATE)
    start = time.monotonic()
    played, _, _ = await play(sources.file_source(str(tmp_path / "a.wav"), realtime=True, block=512))
    assert time.monotonic() - start >= 0.55 and len(played) == int(0.6 * RATE)
    source = sources.file_source(str(tmp_path / "a.wav"), realtime=False, block=512)
    played, _, _ = await play(source)
    assert len(played) == int(0.6 * RATE) and source.played_s == pytest.approx(0.6)


@pytest.mark.asyncio
async def test_a_live_source_drops_and_counts_when_nobody_keeps_up(tmp_path):
    sf.write(tmp_path / "a.wav", tone(1.0, RATE), RATE)
    frames = sources.FrameQueue(0.25)  # nobody reads: only a quarter second fits
    source = sources.file_source(str(tmp_path / "a.wav"), realtime=True, block=512)
    await source.run(frames, lambda *_: None)
    assert frames.samples <= 0.25 * RATE
    assert frames.dropped_frames > 0 and frames.samples + frames.dropped_samples == RATE


@pytest.mark.asyncio
async def test_a_fast_source_waits_for_room_and_loses_nothing(tmp_path):
    sf.write(tmp_path / "a.wav", tone(5.0, RATE), RATE)
    frames = sources.FrameQueue(1.0)
    runner = asyncio.create_task(
        sources.file_source(str(tmp_path / "a.wav"), realtime=False, block=512).run(frames, lambda *_: None))
    runner.add_done_callback(lambda _: frames.close())
    total = 0
    while (block := await frames.get(4000)) is not None:
        assert frames.samples <= RATE
        total += len(block)
        await asyncio.sleep(0.005)  # a slow consumer
    assert total == 5 * RATE and frames.dropped_frames == 0


@pytest.mark.asyncio
async def test_frame_queue_batches_and_drains_after_close():
    frames = sources.FrameQueue(1.0)
    for i in range(4):
        assert frames.offer(np.full(512, i, np.float32))
    batch = await frames.get(1024)
    assert len(batch) == 1024 and batch[0] == 0 and batch[-1] == 1
    frames.close()
    assert len(await frames.get(100_000)) == 1024
    assert await frames.get(100_000) is None


@pytest.mark.asyncio
async def test_a_recorded_session_plays_back_including_a_cut_off_tail(tmp_path):
    writer = recorder.WavWriter(tmp_path / "audio.wav")
    audio = tone(1.7, RATE)
    writer.write(audio)
    writer._file.flush()  # the process died before close()
    played, _, _ = await play(sources.session_source(str(tmp_path), realtime=False, block=512))
    assert len(played) == len(audio)
    np.testing.assert_allclose(played, audio, atol=1 / 32768)


def test_choose_a_device_by_index_or_name():
    found = [InputDevice(0, "HDA Intel PCH: ALC3246 Analog", 2, 44100.0, "ALSA", False),
             InputDevice(3, "USB Headset Mic", 1, 48000.0, "ALSA", True),
             InputDevice(4, "USB Headset Mic (mono)", 1, 48000.0, "ALSA", False)]
    assert devices.choose(found, "").index == 3
    assert devices.choose(found, "0").index == 0
    assert devices.choose(found, "alc3246").index == 0
    assert devices.choose(found, "usb headset mic").index == 3  # exact name wins over a longer one
    with pytest.raises(MicUnavailable, match="several"):
        devices.choose(found, "usb")
    with pytest.raises(MicUnavailable, match="index 7"):
        devices.choose(found, "7")
    with pytest.raises(MicUnavailable, match="--source browser"):
        devices.choose([], "")


def machine_has_microphone():
    try:
        return bool(devices.input_devices(devices.portaudio()))
    except MicUnavailable:
        return False


@pytest.mark.skipif(machine_has_microphone(), reason="this machine has a microphone")
def test_no_microphone_is_one_clear_line_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "streamer", "devices"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "--source file:PATH" in message and "--source browser" in message


@pytest.mark.skipif(machine_has_microphone(), reason="this machine has a microphone")
@pytest.mark.asyncio
async def test_opening_the_absent_microphone_says_what_to_do():
    with pytest.raises(MicUnavailable) as err:
        await sources.MicSource("", 512).run(sources.FrameQueue(1.0), lambda *_: None)
    assert "browser" in str(err.value)
