"""The dashboard (web/) in real headless Chromium against the real daemon on loopback.

One module-scoped run plays six espeak-ng English sentences through `python -m streamer run --source file:...
--record DIR` with the page open; most tests then look at that page or at the recording it left.
The restart test kills and restarts `python -m streamer replay` of that recording, and the
microphone tests use Chromium's fake audio device against `--source browser`. The hostile-feed
tests write a recording by hand (markup and quotes in every string the page shows, labels other
than the trainer's) and replay it through the daemon and in the page. Screenshots go to
tests/artifacts/ for a person to look at.
"""
from __future__ import annotations

import csv
import io
import json
import re
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from testsupport.browser import Daemon, free_port, launch, require_chromium, shot
from testsupport.speech import (
    SENTENCES,
    normalise_words,
    require_espeak,
    speech_with_silences,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

playwright_api = pytest.importorskip("playwright.sync_api")

LABELS = ["angry", "happiness", "neutral", "sadness"]
EMOTIONML = "{http://www.w3.org/2009/10/emotionml}"
SPOKEN = SENTENCES  # six sentences: about 25 s of session
REPLAY_SPEED = 2  # the restart test replays the recording at twice its pace
ENDED = "document.getElementById('speaking').textContent.includes('Ended')"


@dataclass
class Recording:
    folder: Path
    feed: list[dict]
    daemon: Daemon
    page: object

    @property
    def utterances(self) -> list[dict]:
        return [m for m in self.feed if m["type"] == "utterance"]


def read_feed(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "feed.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]


def rows(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#transcript li[data-id]", "els => els.map(e => e.dataset.id)")]


def settle(page, ids: list[int]) -> list[int]:
    """The transcript's ids once it shows `ids` (views update on the next animation frame), or
    whatever it shows after a few seconds, for the assertion to report."""
    try:
        page.wait_for_function(
            "ids => JSON.stringify([...document.querySelectorAll('#transcript li[data-id]')].map(e => Number(e.dataset.id))) === JSON.stringify(ids)",
            arg=ids, timeout=5_000)
    except playwright_api.TimeoutError:
        pass
    return rows(page)


def points(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#timeline g.utt", "els => els.map(e => e.dataset.id)")]


def export(page, fmt: str) -> str:
    with page.expect_download() as info:
        page.click(f"[data-export={fmt}]")
    return Path(info.value.path()).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def playwright():
    require_chromium()
    with playwright_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright):
    b = launch(playwright)
    yield b
    b.close()


@pytest.fixture(scope="module")
def recording(browser, tmp_path_factory):
    """A live session of three spoken sentences, watched by the page from start to end."""
    require_espeak()
    tmp = tmp_path_factory.mktemp("live")
    wav, _ = speech_with_silences(SPOKEN, 1.0, tmp / "speech.wav")
    daemon = Daemon(["run", "--source", f"file:{wav}", "--language", "en", "--record", str(tmp / "rec")],
                    free_port(), tmp / "daemon.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    try:
        page.goto(daemon.url)
        page.wait_for_function(ENDED, timeout=180_000)
        (folder,) = [p for p in (tmp / "rec").iterdir() if p.is_dir()]
        yield Recording(folder, read_feed(folder), daemon, page)
    finally:
        page.close()
        daemon.stop()


def test_live_session_shows_each_utterance_on_the_timeline_and_its_words(recording):
    page, utterances = recording.page, recording.utterances
    assert len(utterances) == len(SPOKEN), [u["text"] for u in utterances]
    ids = [u["utterance_id"] for u in utterances]
    assert points(page) == ids
    assert rows(page) == ids
    for u in utterances:
        row = page.locator(f"#transcript li[data-id='{u['utterance_id']}']")
        assert row.locator(".text").inner_text() == u["text"].strip()
        assert row.get_attribute("data-label") == u["emotion"]["label"]
        assert f"{round(u['emotion']['probs'][u['emotion']['label']] * 100)}%" in row.locator(".chip").inner_text()
        assert page.get_attribute(f"#timeline g.utt[data-id='{u['utterance_id']}']", "data-label") == u["emotion"]["label"]
    heard = set(normalise_words(" ".join(page.locator("#transcript .text").all_inner_texts())))
    for sentence in SPOKEN:
        words = set(normalise_words(sentence))
        assert len(words & heard) >= len(words) / 2, (sentence, heard)
    # Timeline columns lie in time order, and a model the daemon did not load reads "absent".
    xs = page.eval_on_selector_all("#timeline g.utt .band", "els => els.map(e => Number(e.getAttribute('x')))")
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    last = utterances[-1]
    page.hover(f"#timeline g.utt[data-id='{last['utterance_id']}'] .hit")
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible() and last["text"].strip() in tooltip.inner_text()
    for label in LABELS:  # every probability, not just the winner's
        assert f"{round(last['emotion']['probs'][label] * 100)}%" in tooltip.inner_text()
    page.mouse.move(5, 5)
    hello_models = page.locator("#models").inner_text()
    if utterances[0]["audio_emotion"] is None:
        assert "audio absent" in hello_models
        assert "absent" in page.locator("#transcript li[data-id] .parts").first.inner_text()
    shot(page, "live-1280x800")


def test_page_fits_desktop_and_tablet_without_horizontal_scrolling(recording):
    page = recording.page
    for width, height in ((1280, 800), (768, 1024)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(300)
        scroll, client = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert scroll <= client, f"horizontal scrolling at {width} px: {scroll} > {client}"
        shot(page, f"layout-{width}x{height}")
    page.set_viewport_size({"width": 1280, "height": 800})
    legend = page.locator("#legend").inner_text()
    for korean, english in (("분노", "angry"), ("기쁨", "happiness"), ("중립", "neutral"), ("슬픔", "sadness")):
        assert korean in legend and english in legend


def test_keyboard_reaches_utterances_with_visible_focus_and_details(recording):
    page, utterances = recording.page, recording.utterances
    page.locator("body").click(position={"x": 5, "y": 5})
    for _ in range(30):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.matches('#timeline g.utt')"):
            break
    else:
        pytest.fail("Tab never reached an utterance on the timeline")
    last = utterances[-1]
    assert page.evaluate("Number(document.activeElement.dataset.id)") == last["utterance_id"]
    page.keyboard.press("Home")
    first = utterances[0]
    assert page.evaluate("Number(document.activeElement.dataset.id)") == first["utterance_id"]
    stroke = page.evaluate("getComputedStyle(document.activeElement.querySelector('.hit')).strokeWidth")
    assert stroke == "3px", "the focused utterance has no visible focus ring"
    tooltip = page.locator("#tooltip")
    assert tooltip.is_visible() and first["text"].strip() in tooltip.inner_text()
    shot(page, "keyboard-focus")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("Number(document.activeElement.dataset.id)") == utterances[1]["utterance_id"]
    page.keyboard.press("Enter")  # opens the same utterance in the transcript
    assert page.evaluate("document.activeElement.matches('#transcript li.selected')")
    assert page.evaluate("Number(document.activeElement.dataset.id)") == utterances[1]["utterance_id"]
    page.keyboard.press("ArrowUp")
    assert page.evaluate("Number(document.activeElement.dataset.id)") == first["utterance_id"]


def test_exports_match_the_feed(recording):
    page, utterances, folder = recording.page, recording.utterances, recording.folder
    by_id = {u["utterance_id"]: u for u in utterances}

    table = list(csv.DictReader(io.StringIO(export(page, "csv").lstrip("\ufeff"))))
    assert [int(r["utterance_id"]) for r in table] == list(by_id)
    for r in table:
        u = by_id[int(r["utterance_id"])]
        assert (float(r["start"]), float(r["end"]), r["text"], r["label"]) == (u["start"], u["end"], u["text"], u["emotion"]["label"])
        for label in LABELS:
            assert float(r[f"p_{label}"]) == pytest.approx(u["emotion"]["probs"][label], abs=1e-4)
        for part in ("text_emotion", "audio_emotion"):
            assert r[f"{part}_label"] == (u[part]["label"] if u[part] else "")

    cues = [c for c in export(page, "srt").strip().split("\n\n")]
    assert len(cues) == len(utterances)
    for cue, u in zip(cues, utterances):
        number, times, text = cue.split("\n", 2)
        start, end = (_srt_seconds(t) for t in times.split(" --> "))
        assert start == pytest.approx(u["start"], abs=1e-3) and end == pytest.approx(u["end"], abs=1e-3)
        assert u["emotion"]["label"] in text and u["text"].strip() in text

    vtt = export(page, "vtt")
    assert vtt.startswith("WEBVTT\n")
    vtt_times = re.findall(r"^(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})$", vtt, flags=re.M)
    stamps = [_srt_seconds(t) for pair in vtt_times for t in pair]
    assert stamps == pytest.approx([t for u in utterances for t in (u["start"], u["end"])], abs=1e-3)

    root = ET.fromstring(export(page, "emotionml").encode("utf-8"))
    assert root.tag == f"{EMOTIONML}emotionml" and root.get("version") == "1.0"
    (vocabulary,) = root.findall(f"{EMOTIONML}vocabulary")
    assert vocabulary.get("type") == "category"
    assert [i.get("name") for i in vocabulary] == LABELS
    assert root.get("category-set") == f"#{vocabulary.get('id')}"
    emotions = root.findall(f"{EMOTIONML}emotion")
    assert len(emotions) == len(utterances)
    started = datetime.fromisoformat(json.loads((folder / "meta.json").read_text())["started"]).timestamp()
    for emotion, u in zip(emotions, utterances):
        (category,) = emotion.findall(f"{EMOTIONML}category")
        assert category.get("name") == u["emotion"]["label"]
        assert float(category.get("value")) == pytest.approx(u["emotion"]["probs"][u["emotion"]["label"]], abs=1e-4)
        uri = emotion.find(f"{EMOTIONML}reference").get("uri")
        assert uri.endswith(f"/api/sessions/{folder.name}/audio.wav#t={u['start']:.3f},{u['end']:.3f}")
        assert int(emotion.get("start")) == pytest.approx((started + u["start"]) * 1000, abs=1000)

    exported = json.loads(export(page, "json"))
    assert exported["session"] == folder.name
    assert exported["messages"] == read_feed(folder)


def _srt_seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_recorded_session_replays_in_the_page_with_seek_and_speed(recording):
    page, utterances, folder = recording.page, recording.utterances, recording.folder
    page.click("#refresh-sessions")
    page.wait_for_selector(f"#session-select option[value='rec:{folder.name}']", state="attached")
    page.select_option("#session-select", f"rec:{folder.name}")
    page.wait_for_selector("#replay:not([hidden])")
    assert settle(page, []) == [] and page.get_attribute("#conn", "data-state") == "replay"
    # The models the recording was made with (its meta.json, through /api/sessions), not "not in the recording".
    models = json.loads((folder / "meta.json").read_text(encoding="utf-8"))["models"]
    assert page.eval_on_selector_all("#models li.on", "els => els.map(e => e.title)") == [
        f"{name}: {models[key]}" for key, name in
        [("asr", "ASR"), ("text", "text"), ("audio", "audio"), ("multimodal", "multimodal"), ("stacker", "stacker")]
        if models[key]]
    assert models["asr"] and "not in the recording" not in page.locator("#models").inner_text()
    middle = (utterances[0]["t"] + utterances[1]["t"]) / 2  # the first result is out, the second not yet
    page.fill("#replay-seek", str(middle))
    assert settle(page, [utterances[0]["utterance_id"]]) == [utterances[0]["utterance_id"]]
    page.select_option("#replay-speed", "16")
    page.click("#replay-play")
    page.wait_for_function(f"document.querySelectorAll('#transcript li[data-id]').length === {len(utterances)}", timeout=30_000)
    assert points(page) == [u["utterance_id"] for u in utterances]
    ids = [u["utterance_id"] for u in utterances]
    page.fill("#replay-seek", "0")  # seeking back rebuilds from the start: nothing doubled
    assert settle(page, []) == []
    page.select_option("#replay-speed", "Infinity")
    assert settle(page, ids) == ids
    shot(page, "replay-recorded")
    page.select_option("#session-select", f"live:{folder.name}")  # back to the live session, still whole
    assert settle(page, ids) == ids


def test_resume_after_a_daemon_restart_has_no_gap_and_no_duplicate(browser, recording, tmp_path):
    port = free_port()
    replay = Daemon(["replay", str(recording.folder), "--speed", str(REPLAY_SPEED)], port, tmp_path / "replay.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(replay.url)
        page.wait_for_selector("#transcript li[data-id]", timeout=60_000)
        replay.kill()
        page.wait_for_selector("#conn[data-state=reconnecting]", timeout=15_000)
        shot(page, "resume-reconnecting")
        seen = len(rows(page))
        replay.start()
        page.wait_for_function(ENDED, timeout=120_000)
        exported = json.loads(export(page, "json"))
        on_page = (rows(page), points(page))
        shot(page, "resume-done")
    finally:
        page.close()
        replay.stop()
    recorded = recording.feed
    assert [m["seq"] for m in exported["messages"]] == list(range(1, len(recorded) + 1))
    assert exported["messages"] == recorded
    assert exported["gaps"] == []
    ids = [u["utterance_id"] for u in recording.utterances]
    assert on_page == (ids, ids)
    resumed = [int(re.search(r"since=(\d+)", url).group(1)) for url in sockets]
    assert resumed[0] == 0 and max(resumed) > 0, sockets  # it resumed mid-session, not from the start
    assert seen >= 1


def test_resume_after_a_network_drop_has_no_gap_and_no_duplicate(browser, recording, tmp_path):
    """The network goes away without a close (emulated offline): the page notices the silence,
    reconnects when it can and resumes after the last seq it applied."""
    replay = Daemon(["replay", str(recording.folder)], free_port(), tmp_path / "replay.log").start()
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(replay.url)
        page.wait_for_selector("#transcript li[data-id]", timeout=60_000)
        context.set_offline(True)
        page.wait_for_selector("#conn[data-state=reconnecting]", timeout=20_000)
        context.set_offline(False)
        page.wait_for_function(ENDED, timeout=120_000)
        exported = json.loads(export(page, "json"))
    finally:
        context.close()
        replay.stop()
    assert exported["messages"] == recording.feed and exported["gaps"] == []
    assert max(int(re.search(r"since=(\d+)", url).group(1)) for url in sockets) > 0, sockets


def test_a_new_session_after_a_restart_is_followed_and_the_old_one_stays_viewable(browser, recording, tmp_path):
    port = free_port()
    old = Daemon(["replay", str(recording.folder), "--fast"], port, tmp_path / "replay.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    ids = [u["utterance_id"] for u in recording.utterances]
    try:
        page.goto(old.url)
        page.wait_for_function(ENDED, timeout=30_000)
        assert rows(page) == ids
        old.stop()
        page.wait_for_selector("#conn[data-state=reconnecting]", timeout=15_000)
        new = Daemon(["run", "--source", "browser", "--language", "en"], port, tmp_path / "new.log").start()
        try:
            # The page asked for ?since=N of the old session; it must notice and read the new one from its start.
            page.wait_for_function("document.getElementById('state-text').textContent.includes('waiting')", timeout=60_000)
            assert settle(page, []) == [] and not page.is_visible("#replay")
            options = page.eval_on_selector_all("#session-select option", "els => els.map(e => e.value)")
            assert f"live:{recording.folder.name}" in options and len([o for o in options if o.startswith("live:")]) == 2
            shot(page, "new-session")
            page.select_option("#session-select", f"live:{recording.folder.name}")
            assert settle(page, ids) == ids
            assert page.get_attribute("#conn", "data-state") == "connected"
        finally:
            new.stop()
    finally:
        page.close()
        old.stop()


def test_browser_microphone_streams_audio_the_daemon_records(browser, tmp_path):
    daemon = Daemon(["run", "--source", "browser", "--language", "en", "--record", str(tmp_path / "rec")],
                    free_port(), tmp_path / "daemon.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(daemon.url)
        page.wait_for_selector("#conn[data-state=connected]")
        page.click("#mic-button")
        page.wait_for_function("Number(/Live (\\d+) s sent/.exec(document.getElementById('mic-state').textContent)?.[1]) >= 3",
                               timeout=30_000)
        shot(page, "microphone-live")
        sent = float(re.search(r"([\d.]+) s sent", page.locator("#mic-state").inner_text()).group(1))
        page.click("#mic-button")
        assert page.get_attribute("#mic-button", "aria-pressed") == "false"
    finally:
        page.close()
        daemon.stop()
    (folder,) = [p for p in (tmp_path / "rec").iterdir() if p.is_dir()]
    with wave.open(str(folder / "audio.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768
    assert len(audio) / 16000 >= sent - 1.0, f"the page sent {sent} s, the daemon recorded {len(audio) / 16000:.2f} s"
    # Chromium's fake microphone clicks every 0.5 s. The clicks arriving 0.5 s apart in the
    # daemon's 16 kHz recording shows the page resampled and framed the audio right (48 kHz sent
    # as if 16 kHz would put them 1.5 s apart; byte-swapped PCM would be noise throughout).
    loud = np.abs(audio[: len(audio) // 160 * 160]).reshape(-1, 160).max(axis=1) > 0.05  # 10 ms frames
    onsets = np.flatnonzero(loud[1:] & ~loud[:-1]) / 100
    assert len(onsets) >= 3, f"too few clicks in the recording: {onsets}"
    assert np.median(np.diff(onsets)) == pytest.approx(0.5, abs=0.03)
    assert loud.mean() < 0.2, "the recording is loud throughout, not clicks in silence"


def test_microphone_refusals_are_explained(playwright, recording):
    # The user says no to the browser's prompt.
    denied_browser = launch(playwright, allow_mic=False)
    try:
        page = denied_browser.new_page()
        page.goto(recording.daemon.url)
        page.click("#mic-button")
        page.wait_for_selector("#notice:not([hidden])")
        assert "denied" in page.locator("#notice").inner_text()
        assert page.get_attribute("#mic-button", "aria-pressed") == "false"
    finally:
        denied_browser.close()
    # The daemon plays a file, so it has no use for a microphone: the page passes on its reason.
    page = recording.page
    page.click("#mic-button")
    page.wait_for_function("document.getElementById('notice').textContent.includes('--source browser')", timeout=10_000)
    assert page.get_attribute("#mic-button", "aria-pressed") == "false"


def test_microphone_worklet_resamples_48k_to_16k_without_aliasing(recording):
    """The worklet's own resampler (used where the browser will not open a 16 kHz context)."""
    result = recording.page.evaluate("""async () => {
        const rate = 48000, seconds = 1;
        const measure = async (freq) => {
            const ctx = new OfflineAudioContext(1, rate * seconds, rate);
            await ctx.audioWorklet.addModule('mic-worklet.js');
            const node = new AudioWorkletNode(ctx, 'pcm16-sender');
            const chunks = [];
            node.port.onmessage = ({ data }) => chunks.push(new Int16Array(data.pcm));
            const osc = new OscillatorNode(ctx, { frequency: freq });
            const gain = new GainNode(ctx, { gain: 0.5 });
            osc.connect(gain).connect(node).connect(ctx.destination);
            osc.start();
            await ctx.startRendering();
            await new Promise((r) => setTimeout(r, 200));
            const pcm = chunks.flatMap((c) => Array.from(c)).slice(800);  // skip the filter's start
            let crossings = 0, energy = 0;
            for (let i = 1; i < pcm.length; i++) if ((pcm[i - 1] < 0) !== (pcm[i] < 0)) crossings++;
            for (const s of pcm) energy += (s / 32768) ** 2;
            return { samples: pcm.length + 800, freq: crossings / 2 / (pcm.length / 16000), rms: Math.sqrt(energy / pcm.length) };
        };
        return { pass: await measure(1000), stop: await measure(12000) };
    }""")
    assert result["pass"]["samples"] == pytest.approx(16000, abs=700)  # 1 s at 16 kHz, in whole 40 ms frames
    assert result["pass"]["freq"] == pytest.approx(1000, rel=0.01)
    assert result["pass"]["rms"] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)
    # 12 kHz is above the new 8 kHz Nyquist: without filtering it would fold to 4 kHz at full level.
    assert 20 * np.log10(result["stop"]["rms"] / result["pass"]["rms"]) < -30


def test_a_page_opened_with_a_token_passes_it_on_every_request(browser, recording, tmp_path):
    """A daemon with `server.token` answers 401 to any API, feed or microphone URL without it:
    the page must pass its own ?token= on to each, the recorded session's audio included."""
    token = "s3cret-t0ken"
    config = tmp_path / "token.toml"
    config.write_text(f'[server]\ntoken = "{token}"\n', encoding="utf-8")
    silence = tmp_path / "silence.wav"  # a short live session, so the daemon is quick to serve and end
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(2 * 16000))
    recorded = tmp_path / "rec" / recording.folder.name  # the module's recording, listed by this daemon
    recorded.mkdir(parents=True)
    for name in ("meta.json", "feed.jsonl", "audio.wav"):
        (recorded / name).write_bytes((recording.folder / name).read_bytes())
    daemon = Daemon(["run", "--config", str(config), "--source", f"file:{silence}", "--fast", "--record", str(tmp_path / "rec")],
                    free_port(), tmp_path / "daemon.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    requests, refused = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("websocket", lambda ws: requests.append(ws.url))
    page.on("response", lambda r: refused.append(r.url) if r.status == 401 else None)
    try:
        page.goto(f"{daemon.url}?token={token}")
        page.wait_for_function(ENDED, timeout=60_000)  # the live feed came through
        page.click("#refresh-sessions")
        page.wait_for_selector(f"#session-select option[value='rec:{recorded.name}']", state="attached")
        page.select_option("#session-select", f"rec:{recorded.name}")
        page.wait_for_selector("#replay:not([hidden])")  # its feed.jsonl loaded
        with page.expect_request(lambda r: "/audio.wav" in r.url, timeout=10_000):
            page.check("#replay-listen")
            page.click("#replay-play")  # the audio player fetches the recording
        download = page.get_attribute("#replay-download", "href")
        page.click("#mic-button")  # the daemon plays a file: it refuses /mic, but only after the token check
        page.wait_for_function("document.getElementById('notice').textContent.includes('--source browser')", timeout=10_000)
        guarded = [u for u in requests + [download] if "/api/" in u or u.split("?")[0].endswith(("/ws", "/mic"))]
        assert {u.split("?")[0].rsplit("/", 1)[-1] for u in guarded} == {"rooms", "sessions", "feed.jsonl", "audio.wav", "ws", "mic"}
        assert [u for u in guarded if f"token={token}" not in u] == []
        assert refused == []
    finally:
        page.close()
        daemon.stop()


# ---- a feed that carries markup, and labels other than the trainer's -------------------------

# Closes a quoted attribute of either kind, then opens elements that would run script; `&amp;`
# must come out as those five characters, not as "&". No "/": it also names a folder.
XSS = """'"><img src=x onerror="window.pwned = (window.pwned || 0) + 1"><x-pwned>&amp;"""
HELLO_LABELS = ["sadness", f"fear{XSS}", "angry", "calm"]  # not the trainer's four, nor its order
HOSTILE_MODELS = {"asr": f"whisper{XSS}", "text": f"e5{XSS}", "audio": None, "multimodal": None, "stacker": None}


def hostile_recording(folder: Path, session_id: str) -> list[dict]:
    """A recorded session as `streamer run --record` writes it (meta.json, feed.jsonl), with XSS in
    its id, source, model names, transcripts, `used` and an error; three utterances, one per
    label but `angry`, each label's probability differing so the columns can be told apart."""
    folder.mkdir(parents=True)
    source = f"mic{XSS}"

    def probs(winner: str) -> dict[str, float]:
        rest = [l for l in reversed(HELLO_LABELS) if l != winner]  # not the hello's order
        return {winner: 0.55, rest[0]: 0.25, rest[1]: 0.15, rest[2]: 0.05}

    def utterance(uid: int, start: float, label: str, text: str) -> dict:
        emotion = {"label": label, "probs": probs(label)}
        return {"type": "utterance", "utterance_id": uid, "start": start, "end": start + 1.5, "text": text,
                "emotion": emotion, "text_emotion": emotion, "audio_emotion": None, "multimodal_emotion": None,
                "speaker": {"id": f"S{1 + uid % 2}", "role": f"client{XSS}" if uid == 1 else None, "similarity": 0.8},
                "used": [f"text{XSS}"], "asr": {"language": "ko", "no_speech_prob": 0.01, "avg_logprob": -0.3, "filtered": None},
                "latency_ms": {"asr": 200.0, "emotion": 5.0, "text_model": 5.0, "total": 206.0, "end_to_message": 700.0}}

    status = {"type": "status", "level_db": -30.0, "speaking": False, "lag_s": 0.1, "dropped_frames": 0, "clients": 1,
              "source": source, "state": "listening"}
    bodies = [
        {**status, "t": 0.5},
        {**utterance(1, 0.5, HELLO_LABELS[1], f"안녕하세요 {XSS} 1 --> 2"), "t": 2.7},
        {**utterance(2, 3.0, "calm", f"'quoted' \"double\" {XSS}"), "t": 5.2},
        {"type": "error", "code": "analysis_failed", "message": f"utterance 3 failed {XSS}", "utterance_id": 3, "t": 6.0},
        {**utterance(4, 6.5, "sadness", f"<b>bold?</b> {XSS}"), "t": 8.7},
        {**status, "t": 9.0},
        {"type": "session_end", "reason": "source ended", "utterances": 3, "duration": 9.5, "dropped_frames": 0, "t": 9.5},
    ]
    messages = [{"session": session_id, "seq": seq, **body} for seq, body in enumerate(bodies, 1)]
    (folder / "feed.jsonl").write_text("".join(json.dumps(m, ensure_ascii=False) + "\n" for m in messages), encoding="utf-8")
    meta = {"id": session_id, "started": "2026-05-09T14:00:00+09:00", "source": source, "language": "ko",
            "models": HOSTILE_MODELS, "config": {}, "end": bodies[-1]}
    (folder / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return messages


def assert_nothing_ran(page) -> None:
    """No element from the feed's markup exists, and none ran its onerror (an <img> that got in,
    even one already replaced, would have failed to load from the daemon by now)."""
    page.wait_for_timeout(500)
    assert page.evaluate("document.querySelectorAll('img, x-pwned').length") == 0
    assert page.evaluate("window.pwned ?? 0") == 0


def assert_labels_drawn(page, labels: list[str], utterances: list[dict]) -> None:
    """The legend, each timeline column, the tooltip and the summary show `labels` in that order;
    each column's rects are the utterance's probabilities; every fill names a pattern the page has."""
    assert page.eval_on_selector_all("#legend li", "els => els.map(e => e.dataset.label)") == labels
    legend = page.locator("#legend").inner_text()
    assert f"fear{XSS}" in legend and "슬픔" in legend and "분노" in legend and "calm" in legend
    assert "기쁨" not in legend and "중립" not in legend  # known labels this session does not have
    assert page.eval_on_selector_all("#summary > .share", "els => els.map(e => e.dataset.label)") == labels
    for block in page.eval_on_selector_all(".per-speaker", "els => els.map(e => [...e.querySelectorAll('.share')].map(s => s.dataset.label))"):
        assert block == labels  # each speaker's shares, in the same order
    # The speaker's role is the feed's string, shown as text (utterance 1 is S2, a role full of markup).
    assert page.locator("#transcript li[data-id='1'] .speaker").inner_text() == f"S2 · client{XSS}"
    for u in utterances:
        g = f"#timeline g.utt[data-id='{u['utterance_id']}']"
        column = page.eval_on_selector_all(f"{g} rect.p", "els => els.map(e => [e.dataset.label, Number(e.getAttribute('height'))])")
        assert [l for l, _ in column] == labels
        heights = {l: h for l, h in column}
        for label in labels:
            assert heights[label] / sum(heights.values()) == pytest.approx(u["emotion"]["probs"][label], abs=1e-3)
        page.hover(f"{g} .hit")
        shown = page.locator("#tooltip .tt-probs th").all_inner_texts()  # "glyph 한국어 english" per label
        assert len(shown) == len(labels) and all(th.endswith(f" {l}") for th, l in zip(shown, labels))
        tooltip = page.locator("#tooltip").inner_text()
        assert u["text"].strip() in tooltip and f"from text{XSS}" in tooltip
    page.mouse.move(5, 5)
    missing = page.evaluate("""[...document.querySelectorAll('#timeline .band, #legend rect, #summary rect[fill]')]
        .map(r => r.getAttribute('fill')).filter(f => !document.getElementById(f.slice(5, -1)))""")
    assert missing == []
    unknown = [u for u in utterances if u["emotion"]["label"] not in ("angry", "sadness")]
    assert unknown and {page.get_attribute(f"#timeline g.utt[data-id='{u['utterance_id']}'] .band", "fill") for u in unknown} == {"url(#pat-unknown)"}


def test_hostile_strings_in_the_live_feed_are_shown_as_text_and_the_hellos_labels_are_drawn(browser, tmp_path):
    """Markup and quotes in every string of a replayed session (through the daemon's /ws) are shown
    as text, never run; the legend, timeline, summary and exports follow the hello's labels."""
    session_id = f"s1{XSS}"
    messages = hostile_recording(tmp_path / "rec" / "hostile", session_id)
    utterances = [m for m in messages if m["type"] == "utterance"]
    replay = Daemon(["replay", str(tmp_path / "rec" / "hostile"), "--fast"], free_port(), tmp_path / "replay.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)

    def with_labels(ws) -> None:
        # `streamer replay` names the trainer's labels in its hello whatever the recording holds;
        # the route stands in for a daemon whose bundle has HELLO_LABELS.
        server = ws.connect_to_server()

        def from_daemon(text) -> None:
            msg = json.loads(text)
            ws.send(json.dumps({**msg, "labels": HELLO_LABELS}) if msg.get("type") == "hello" else text)

        server.on_message(from_daemon)

    try:
        page.route_web_socket("**/ws*", with_labels)
        page.goto(replay.url)
        page.wait_for_function(ENDED, timeout=30_000)
        ids = [u["utterance_id"] for u in utterances]
        assert settle(page, ids) == ids
        for u in utterances:
            assert page.locator(f"#transcript li[data-id='{u['utterance_id']}'] .text").inner_text() == u["text"].strip()
            assert f"from text{XSS}" in page.locator(f"#transcript li[data-id='{u['utterance_id']}'] .from").inner_text()
        assert page.eval_on_selector_all("#models li.on", "els => els.map(e => e.title)") == [
            f"ASR: {HOSTILE_MODELS['asr']}", f"text: {HOSTILE_MODELS['text']}"]
        assert page.get_attribute("#source-text", "title") == f"mic{XSS}"
        assert page.locator("#source-text").inner_text() == f"mic{XSS}"
        assert page.eval_on_selector("#session-select", "s => s.value") == f"live:{session_id}"
        assert session_id in page.locator("#session-select option:checked").inner_text()
        assert_labels_drawn(page, HELLO_LABELS, utterances)
        shot(page, "hostile-feed")

        root = ET.fromstring(export(page, "emotionml").encode("utf-8"))
        assert [i.get("name") for i in root.find(f"{EMOTIONML}vocabulary")] == HELLO_LABELS
        assert root.find(f"{EMOTIONML}info").text == f"session {session_id}"
        emotions = root.findall(f"{EMOTIONML}emotion")
        assert [(e.find(f"{EMOTIONML}info").text, e.find(f"{EMOTIONML}category").get("name")) for e in emotions] == [
            (u["text"], u["emotion"]["label"]) for u in utterances]
        table = list(csv.DictReader(io.StringIO(export(page, "csv").lstrip("\ufeff"))))
        assert [k for k in table[0] if k.startswith("p_")] == [f"p_{l}" for l in HELLO_LABELS]
        assert [r["text"] for r in table] == [u["text"] for u in utterances]
        vtt = export(page, "vtt")
        assert "&lt;img src=x" in vtt and "<img" not in vtt
        for subtitles in (vtt, export(page, "srt")):  # "-->" only where a cue's times are
            assert all(re.fullmatch(r"[\d:.,]+ --> [\d:.,]+", line) for line in subtitles.splitlines() if "-->" in line)
        assert_nothing_ran(page)
    finally:
        page.close()
        replay.stop()


def test_hostile_recordings_replayed_in_the_page_are_shown_as_text_with_their_own_labels(browser, tmp_path):
    """A recorded session opened in the page has no hello: its labels come from its utterances.
    Folder names and meta.json values listed by /api/sessions are shown as text as well."""
    rec = tmp_path / "rec"
    messages = hostile_recording(rec / "20260509-140000-hostile", "20260509-140000-hostile")
    utterances = [m for m in messages if m["type"] == "utterance"]
    odd = rec / XSS  # listed by /api/sessions (its name is no valid session id, so nothing can be fetched)
    odd.mkdir()
    (odd / "meta.json").write_text(json.dumps({"id": XSS, "started": XSS, "models": HOSTILE_MODELS,
                                               "end": {"utterances": XSS, "duration": 1.0}}), encoding="utf-8")
    silence = tmp_path / "silence.wav"
    with wave.open(str(silence), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(2 * 16000))
    daemon = Daemon(["run", "--source", f"file:{silence}", "--fast", "--record", str(rec)],
                    free_port(), tmp_path / "daemon.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        page.goto(daemon.url)
        page.wait_for_function(ENDED, timeout=60_000)
        page.click("#refresh-sessions")
        page.wait_for_selector("#session-select option[value='rec:20260509-140000-hostile']", state="attached")
        options = dict(page.eval_on_selector_all("#session-select option", "els => els.map(e => [e.value, e.textContent])"))
        assert f"rec:{XSS}" in options and options[f"rec:{XSS}"].endswith(f"{XSS} utt. · {XSS}")
        page.select_option("#session-select", "rec:20260509-140000-hostile")
        page.wait_for_selector("#replay:not([hidden])")
        page.select_option("#replay-speed", "Infinity")
        ids = [u["utterance_id"] for u in utterances]
        assert settle(page, ids) == ids
        for u in utterances:
            assert page.locator(f"#transcript li[data-id='{u['utterance_id']}'] .text").inner_text() == u["text"].strip()
        assert page.eval_on_selector_all("#models li.on", "els => els.map(e => e.title)") == [
            f"ASR: {HOSTILE_MODELS['asr']}", f"text: {HOSTILE_MODELS['text']}"]
        assert_labels_drawn(page, list(utterances[0]["emotion"]["probs"]), utterances)
        shot(page, "hostile-recording")
        assert_nothing_ran(page)
    finally:
        page.close()
        daemon.stop()


# -- speakers ---------------------------------------------------------------------------------------


def speakers_shown(page) -> list[str]:
    return page.eval_on_selector_all("#transcript li[data-id]:not([hidden]) .speaker", "els => els.map(e => e.textContent)")


@pytest.fixture(scope="module")
def two_voices(browser, tmp_path_factory):
    """Four turns of two espeak-ng voices analysed by `run --fast`, the page watching."""
    from testsupport.conversation import alternating, write

    require_espeak()
    tmp = tmp_path_factory.mktemp("voices")
    audio, _truth = alternating(4, gap_s=1.0)
    wav = write(audio, tmp / "talk.wav")
    daemon = Daemon(["run", "--source", f"file:{wav}", "--fast", "--language", "en", "--record", str(tmp / "rec"),
                     "--voiceprints", str(tmp / "vp")], free_port(), tmp / "daemon.log").start()
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    try:
        page.goto(daemon.url)
        page.wait_for_function(ENDED, timeout=180_000)
        yield daemon, page, tmp
    finally:
        page.close()
        daemon.stop()


def test_speakers_on_rows_lane_summary_filter_corrections_and_exports(two_voices):
    daemon, page, _tmp = two_voices
    assert speakers_shown(page) == ["S1", "S2", "S1", "S2"]
    lane = page.eval_on_selector_all("#timeline g.utt", "els => els.map(e => [e.dataset.speaker, e.querySelector('.spk').getAttribute('fill')])")
    assert [s for s, _ in lane] == ["S1", "S2", "S1", "S2"] and lane[0][1] == lane[2][1] != lane[1][1]
    assert page.eval_on_selector_all(".per-speaker", "els => els.map(e => e.dataset.speaker)") == ["S1", "S2"]
    shot(page, "speakers")

    page.select_option("#speaker-filter", "S2")  # the client's utterances alone
    assert speakers_shown(page) == ["S2", "S2"]
    assert page.eval_on_selector_all("#timeline g.utt.dim", "els => els.map(e => e.dataset.speaker)") == ["S1", "S1"]
    table = list(csv.DictReader(io.StringIO(export(page, "csv").lstrip("\ufeff"))))
    assert [r["speaker"] for r in table] == ["S2", "S2"]
    page.select_option("#speaker-filter", "")

    page.select_option("#speaker-counselor", "S1")  # "S1 is the counselor": the other voice is the client
    assert speakers_shown(page) == ["S1 · 상담사 Counselor", "S2 · 내담자 Client"] * 2
    table = list(csv.DictReader(io.StringIO(export(page, "csv").lstrip("\ufeff"))))
    assert [(r["speaker"], r["speaker_role"]) for r in table] == [("S1", "counselor"), ("S2", "client")] * 2
    assert float(table[2]["speaker_similarity"]) > 0.75
    vtt, srt = export(page, "vtt"), export(page, "srt")
    for subtitles in (vtt, srt):
        voices = [line.split(">")[0] for line in subtitles.splitlines() if line.startswith("<v ")]
        assert voices == ["<v Counselor", "<v Client"] * 2
    root = ET.fromstring(export(page, "emotionml").encode("utf-8"))
    who = [e.find(f"{EMOTIONML}info/{{urn:korean-emotion-monitor:speakers}}speaker") for e in root.findall(f"{EMOTIONML}emotion")]
    assert [(w.get("id"), w.get("role")) for w in who] == [("S1", "counselor"), ("S2", "client")] * 2
    data = json.loads(export(page, "json"))
    assert [u["speaker_shown"]["role"] for u in data["utterances"]] == ["counselor", "client"] * 2
    assert [u["speaker"]["role"] for u in data["utterances"]] == [None] * 4  # the feed's own, untouched
    assert data["speakers"]["corrections"] == {"counselor": "S1", "swap": False}

    page.click("#speaker-swap")  # the two were the wrong way round
    assert speakers_shown(page) == ["S2 · 내담자 Client", "S1 · 상담사 Counselor"] * 2
    assert page.get_attribute("#speaker-swap", "aria-pressed") == "true"
    page.click("#speaker-swap")
    page.select_option("#speaker-counselor", "")
    assert speakers_shown(page) == ["S1", "S2", "S1", "S2"]


def enroll_browser(playwright, wav: Path):
    """Chromium whose fake microphone plays `wav` (a person speaking) instead of a beep."""
    from testsupport.browser import ALLOW_MIC, CHROMIUM_ARGS

    return playwright.chromium.launch(executable_path=require_chromium(),
                                      args=CHROMIUM_ARGS + [ALLOW_MIC, f"--use-file-for-fake-audio-capture={wav}"])


def test_enroll_my_voice_from_the_dashboard_microphone(playwright, two_voices):
    from core import voiceprints
    from testsupport.conversation import VOICES, write
    from testsupport.speech import synthesize, trim

    daemon, beeping, tmp = two_voices
    speech = np.concatenate([np.concatenate([trim(synthesize(s, VOICES[0])), np.zeros(8000, np.float32)]) for s in SENTENCES[:3]])
    wav = write(speech, tmp / "me.wav")
    talking = enroll_browser(playwright, wav)
    try:
        page = talking.new_page()
        page.goto(daemon.url)
        page.wait_for_selector("#conn[data-state=connected]")
        page.select_option("#enroll-role", "counselor")
        page.click("#enroll-button")
        page.wait_for_function("document.getElementById('notice').textContent.startsWith('Enrolled counselor')", timeout=60_000)
    finally:
        talking.close()
    stored = voiceprints.load_all(tmp / "vp")
    assert list(stored) == ["counselor"] and stored["counselor"].speech_s >= 3.0

    # Chromium's own fake microphone only beeps: refused, and said why.
    beeping.click("#enroll-button")
    beeping.wait_for_function("document.getElementById('notice').textContent.startsWith('Enrolment failed')", timeout=60_000)
    assert "no speech" in beeping.locator("#notice").inner_text()
    assert list(voiceprints.load_all(tmp / "vp")) == ["counselor"]
