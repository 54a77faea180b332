"""What the dashboard (web/) costs the browser late in a long counseling session, against a short one.

    .venv/bin/python -m bench.dashboard_bench [--minutes 90] [--baseline 5] [--per-minute 8] [--ticks 30]

Staff keep the page open for 45-90 minutes, so what matters is whether the work per incoming
message, and the page's memory, grow with the session. For each session length (the baseline
first, then the long one), in a temp dir that is removed afterwards:

1. synthesise a recorded session folder exactly as `streamer run --record` writes it (docs/feed.md
   "Recorded sessions"): `feed.jsonl` of numbered messages (status about once a second, Korean
   utterances of varying length about `--per-minute` a minute with probabilities summing to 1,
   text_emotion only, latency_ms; a final `session_end`), `meta.json` and a short silent
   `audio.wav`;
2. start `python -m streamer replay DIR --fast` (the real daemon) and open the page in headless
   Chromium. The page's feed socket goes through Playwright's WebSocket route: the history
   (everything but the last `--ticks` seconds) is passed on at once, the tail (`--ticks` status
   messages, the utterances among them, then `session_end`) is held back and passed on at the
   recorded pace, one second per status tick, as a live dashboard receives it;
3. once the page shows every history utterance, measure through the Chrome DevTools Protocol
   (Performance.getMetrics) the script, layout and style-recalc time and the busy time of the
   renderer's main thread (TaskDuration) for each tail tick, and, after a forced GC, the JS heap
   and DOM node counts.

Per-tick numbers are the mean and the 90th percentile over the tail ticks; "load" is the wall time
from opening the page to seeing every history utterance (it includes Playwright relaying each
message, so it is an upper bound). Compare rows of one run: the machine is
shared and headless Chromium here has no GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from playwright.sync_api import sync_playwright

from streamer import feed
from testsupport.browser import Daemon, free_port, launch

ROOT = Path(__file__).resolve().parents[1]

LABELS = ["angry", "happiness", "neutral", "sadness"]
PHRASES = [
    "요즘 잠을 잘 못 자요", "회사에서 스트레스를 많이 받고 있어요", "그냥 좀 피곤해요", "네",
    "가족들이랑 이야기를 해 봤는데 잘 안 통하는 것 같아요", "어제는 그래도 조금 괜찮았어요",
    "솔직히 너무 화가 나서 참을 수가 없었어요", "잘 모르겠어요", "친구를 만나서 오랜만에 웃었어요",
    "아무것도 하기 싫고 계속 누워만 있어요", "선생님 말씀 듣고 조금 생각해 봤어요", "그게 제일 힘들어요",
    "밥은 그래도 챙겨 먹으려고 노력하고 있어요", "다음 주에 시험이 있어서 걱정이에요", "아니요 괜찮아요",
]
METRICS = ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")


# ---- the recorded session --------------------------------------------------------------------

def probs_for(rng: random.Random, label: str) -> dict[str, float]:
    raw = {l: rng.random() * 0.3 for l in LABELS}
    raw[label] += 1.0
    total = sum(raw.values())
    probs = {l: round(v / total, 4) for l, v in raw.items()}
    probs[label] = round(probs[label] + 1.0 - sum(probs.values()), 4)  # exactly 1 after rounding
    return probs


def utterance_body(rng: random.Random, uid: int, start: float, end: float) -> dict:
    words = " ".join(rng.choice(PHRASES) for _ in range(rng.choice([1, 1, 2, 3, 5])))
    label = rng.choices(LABELS, weights=[1, 2, 5, 3])[0]
    text_emotion = {"label": label, "probs": probs_for(rng, label)}
    asr_ms = round(150 + 40 * (end - start) + rng.random() * 60, 1)
    text_ms = round(4 + rng.random() * 4, 1)
    total = round(asr_ms + text_ms + 1.0, 1)
    return {
        "utterance_id": uid, "start": round(start, 2), "end": round(end, 2), "text": words,
        "emotion": text_emotion, "text_emotion": text_emotion, "audio_emotion": None, "multimodal_emotion": None,
        "used": ["text"],
        "asr": {"language": "ko", "no_speech_prob": round(rng.random() * 0.05, 3),
                "avg_logprob": round(-0.1 - rng.random() * 0.5, 3), "filtered": None},
        "latency_ms": {"asr": asr_ms, "emotion": round(text_ms + 0.3, 1), "text_model": text_ms, "total": total,
                       "end_to_message": round(500 + total + rng.random() * 100, 1)},
    }


def synthesise(root: Path, minutes: float, per_minute: float, seed: int = 1) -> tuple[Path, list[dict]]:
    """A session folder `root/ID` as the recorder writes it; returns it and its numbered messages."""
    rng = random.Random(seed)
    started = datetime(2026, 5, 9, 14, 0, tzinfo=timezone(timedelta(hours=9)))
    session_id = f"{started:%Y%m%d-%H%M%S}-{seed:04x}"
    duration = minutes * 60.0
    events: list[tuple[float, str, dict]] = []
    # Utterances: speech of 1-8 s separated by pauses, about `per_minute` a minute.
    gap = 60.0 / per_minute
    t, uid, speaking = 1.0, 0, []
    while True:
        length = rng.uniform(1.0, min(8.0, gap * 1.6))
        start = t + rng.uniform(0.3, 1.0)
        end = start + length
        if end + 2 > duration:
            break
        uid += 1
        body = utterance_body(rng, uid, start, end)
        events.append((round(end + body["latency_ms"]["end_to_message"] / 1000, 3), "utterance", body))
        speaking.append((start, end))
        t = start + max(gap * rng.uniform(0.6, 1.4) - 0.65, length + 0.5)  # 0.65: the mean lead-in above
    # Status about once a second (the daemon's is not exactly periodic).
    k, si = 1, 0
    while k < duration:
        ts = k + rng.uniform(0.0, 0.02)
        while si < len(speaking) and speaking[si][1] < ts - 1:
            si += 1
        talking = si < len(speaking) and speaking[si][0] <= ts <= speaking[si][1] + 0.3
        events.append((round(ts, 3), "status", feed.status_body(
            rng.uniform(-30, -18) if talking else rng.uniform(-62, -48), talking, rng.uniform(0.0, 0.3), 0, 1,
            "mic", "listening")))
        k += 1
    events.sort(key=lambda e: e[0])
    messages = [{"type": kind, "session": session_id, "seq": i, "t": ts, **body}
                for i, (ts, kind, body) in enumerate(events, 1)]
    end_body = feed.session_end_body("shutdown", uid, duration)
    messages.append({"type": "session_end", "session": session_id, "seq": len(messages) + 1,
                     "t": round(duration, 3), **end_body})

    folder = root / session_id
    folder.mkdir(parents=True)
    with open(folder / "feed.jsonl", "w", encoding="utf-8") as f:
        for m in messages:
            f.write(feed.encode(m) + "\n")
    meta = {"id": session_id, "started": started.isoformat(timespec="seconds"), "source": "mic", "language": "ko",
            "models": {"asr": "whisper-small", "text": "e5_head", "audio": None, "multimodal": None, "stacker": None},
            "config": {}, "end": end_body}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    samples = 16_000  # one second of silence: the dashboard's live view does not load the audio
    (folder / "audio.wav").write_bytes(
        b"RIFF" + struct.pack("<I", 36 + 2 * samples) + b"WAVE" + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16_000, 32_000, 2, 16) + b"data" + struct.pack("<I", 2 * samples)
        + b"\0" * (2 * samples))
    return folder, messages


# ---- the measurement -------------------------------------------------------------------------

def metrics(cdp) -> dict[str, float]:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def memory(page, cdp) -> dict[str, float]:
    cdp.send("HeapProfiler.collectGarbage")
    m = metrics(cdp)
    return {"heap_mb": m["JSHeapUsedSize"] / 2**20, "nodes": m["Nodes"],
            "elements": page.evaluate("document.getElementsByTagName('*').length")}


def measure(browser, folder: Path, messages: list[dict], ticks: int, work: Path) -> dict:
    statuses = [m for m in messages if m["type"] == "status"]
    cut = statuses[-ticks - 1]["seq"]  # the history ends at this status; the tail is held back
    history_utts = [m["utterance_id"] for m in messages if m["type"] == "utterance" and m["seq"] <= cut]
    all_utts = sum(m["type"] == "utterance" for m in messages)
    held: list[str] = []
    route: dict = {}

    def on_socket(ws) -> None:
        server = ws.connect_to_server()
        route["ws"] = ws

        def from_daemon(text) -> None:
            msg = json.loads(text)
            if msg.get("reply") or msg.get("seq", 0) <= cut:
                ws.send(text)
            else:
                held.append(text)

        server.on_message(from_daemon)

    daemon = Daemon(["replay", str(folder), "--fast"], free_port(), work / f"{folder.name}.log").start()
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.route_web_socket("**/ws*", on_socket)
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable", {"timeDomain": "threadTicks"})
        t0 = time.perf_counter()
        page.goto(daemon.url)
        page.wait_for_function("n => document.querySelectorAll('#transcript li[data-id]').length >= n",
                               arg=len(history_utts), timeout=300_000)
        load_s = time.perf_counter() - t0
        page.wait_for_timeout(1500)  # the last frame drawn, the daemon done sending
        before = memory(page, cdp)
        # The tail at the recorded pace: every held message up to and including each status tick,
        # then a second for the page to draw it (a rAF) and to sit idle like a real dashboard.
        per_tick: list[dict[str, float]] = []
        pending = [json.loads(t) for t in held]
        pending.sort(key=lambda m: m["seq"])
        i = 0
        while i < len(pending) and len(per_tick) < ticks:
            start = metrics(cdp)
            while i < len(pending):
                msg = pending[i]
                route["ws"].send(feed.encode(msg))
                i += 1
                if msg["type"] == "status":
                    break
            page.wait_for_timeout(1000)
            end = metrics(cdp)
            per_tick.append({k: (end[k] - start[k]) * 1000 for k in METRICS})
        for msg in pending[i:]:
            route["ws"].send(feed.encode(msg))
        page.wait_for_function("n => document.querySelectorAll('#transcript li[data-id]').length >= n",
                               arg=all_utts, timeout=30_000)
        after = memory(page, cdp)
    finally:
        context.close()
        daemon.stop()
    return {"utterances": len(history_utts), "messages": cut, "load_s": load_s, "before": before, "after": after,
            "ticks": per_tick}


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=90, help="the long session (default 90)")
    parser.add_argument("--baseline", type=float, default=5, help="the short session to compare with (default 5)")
    parser.add_argument("--per-minute", type=float, default=8, help="utterances a minute (default 8)")
    parser.add_argument("--ticks", type=int, default=30, help="status ticks measured at the end (default 30)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    results = {}
    try:
        with sync_playwright() as p:
            browser = launch(p, allow_mic=False)
            try:
                for minutes in (args.baseline, args.minutes):
                    folder, messages = synthesise(work / f"{minutes:g}min", minutes, args.per_minute)
                    print(f"{minutes:g} min: {len(messages)} messages, "
                          f"{sum(m['type'] == 'utterance' for m in messages)} utterances ...", file=sys.stderr, flush=True)
                    results[minutes] = measure(browser, folder, messages, args.ticks, work)
            finally:
                browser.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nDashboard cost per 1 s status tick over the last {args.ticks} s of a session "
          f"(headless Chromium, CDP Performance.getMetrics; mean / p90 ms per tick)\n")
    head = (f"{'session':>8} {'utts':>5} {'msgs':>6} {'load s':>7} {'script':>12} {'layout':>12} {'style':>12} "
            f"{'script+layout':>14} {'task':>12} {'heap MB':>8} {'nodes':>7} {'elements':>8} {'heap MB end':>11} {'nodes end':>9}")
    print(head)
    print("-" * len(head))
    for minutes, r in results.items():
        col = {k: [t[k] for t in r["ticks"]] for k in METRICS}
        sl = [t["ScriptDuration"] + t["LayoutDuration"] for t in r["ticks"]]

        def cell(values: list[float]) -> str:
            return f"{statistics.mean(values):5.2f}/{p90(values):5.2f}"

        print(f"{minutes:>5g} min {r['utterances']:>5} {r['messages']:>6} {r['load_s']:>7.1f} "
              f"{cell(col['ScriptDuration']):>12} {cell(col['LayoutDuration']):>12} {cell(col['RecalcStyleDuration']):>12} "
              f"{cell(sl):>14} {cell(col['TaskDuration']):>12} {r['before']['heap_mb']:>8.1f} {r['before']['nodes']:>7.0f} "
              f"{r['before']['elements']:>8} {r['after']['heap_mb']:>11.1f} {r['after']['nodes']:>9.0f}")
    short, long = results[args.baseline], results[args.minutes]
    ratio = lambda k: statistics.mean(t[k] for t in long["ticks"]) / max(statistics.mean(t[k] for t in short["ticks"]), 1e-6)
    print(f"\nlong / short per tick: script x{ratio('ScriptDuration'):.1f}, layout x{ratio('LayoutDuration'):.1f}, "
          f"style x{ratio('RecalcStyleDuration'):.1f}, task x{ratio('TaskDuration'):.1f}; "
          f"heap x{long['before']['heap_mb'] / short['before']['heap_mb']:.1f}, "
          f"nodes x{long['before']['nodes'] / short['before']['nodes']:.1f}")
    print("heap/nodes/elements: after a forced GC with the whole history shown; '... end' after the tail too")
    return 0


if __name__ == "__main__":
    sys.exit(main())
