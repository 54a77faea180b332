"""Run the monitor: serve the dashboard and the live feed of one source (mic, file, session, browser).

`serve` loads the models, starts the server and runs one `Session` (streamer/session.py) until
the source ends or a signal comes; after a source ends it keeps serving the finished session
unless told to exit.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

from core.audio import SAMPLE_RATE
from core.errors import UserError
from streamer import feed, sources
from streamer.config import Config, load_config, override
from streamer.devices import MicUnavailable
from streamer.recorder import Recorder
from streamer.server import FeedServer, check_exposure, stop_on_signals
from streamer.session import Session


def _redacted(config: Config) -> dict[str, Any]:
    """The config as recorded in meta.json, without the token."""
    data = dataclasses.asdict(config)
    if data["server"]["token"]:
        data["server"]["token"] = "(set)"
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a config.toml (default: built-in defaults)")
    parser.add_argument("--source", help="mic, file:PATH, session:DIR or browser (default: audio.source)")
    parser.add_argument("--language", help="speech language for Whisper, e.g. ko, en (default: asr.language)")
    parser.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: server.port, 8765; 0 = any free port)")
    parser.add_argument("--record", metavar="DIR", help="record the session into a folder under DIR")
    parser.add_argument("--bundle", help="emotion model bundle folder, or 'default'")
    parser.add_argument("--device", help="microphone name or index (`python -m streamer devices`)")
    parser.add_argument("--fast", action="store_true", help="play files as fast as possible instead of at real time")
    parser.add_argument("--exit-at-end", action="store_true", help="stop serving when the source ends (scripts, benchmarks)")
    add_speaker_arguments(parser)


def add_speaker_arguments(parser: argparse.ArgumentParser) -> None:
    """The speaker flags `run` and `analyze` share."""
    parser.add_argument("--speakers", type=int, metavar="N", help="voices to tell apart (default: speakers.max_speakers, 2; 0 = off)")
    parser.add_argument("--voiceprints", metavar="DIR", help="folder of enrolled voiceprints (default: speakers.voiceprints)")
    parser.add_argument("--channels", choices=("mix", "split"), help="split: each channel of a stereo input is one speaker (default: audio.channels)")


def speaker_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"speakers.max_speakers": args.speakers, "speakers.voiceprints": args.voiceprints, "audio.channels": args.channels}


def config_from_args(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    return override(config, {
        "audio.source": args.source, "asr.language": args.language, "server.host": args.host,
        "server.port": args.port, "record.dir": args.record, "emotion.bundle": args.bundle,
        "audio.device": args.device, "audio.realtime": False if args.fast else None, **speaker_overrides(args),
    })


def make_source(config: Config) -> sources.Source:
    """The source a spec names, checked now so a typo is an error before anything loads."""
    spec = config.audio.source
    block = int(config.audio.block_ms * SAMPLE_RATE / 1000)
    kind, _, rest = spec.partition(":")
    split = config.audio.channels == "split"
    if spec == "mic":
        return sources.MicSource(config.audio.device, block, channels=2 if split else 1)
    if split and kind != "file":
        raise UserError(f"--channels split needs a stereo microphone or file; {spec} gives one channel "
                        "(a recorded session keeps the mix): use --channels mix")
    if spec == "browser":
        return sources.BrowserSource()
    if kind == "file" and rest:
        if not Path(rest).expanduser().is_file():
            raise UserError(f"--source {spec}: {rest} is not a file; give the path of an audio file")
        if split:
            check_stereo(Path(rest).expanduser())
        return sources.file_source(rest, config.audio.realtime, block, mono=not split)
    if kind == "session" and rest:
        if not (Path(rest).expanduser() / "audio.wav").is_file():
            raise UserError(f"--source {spec}: {rest}/audio.wav does not exist; give a folder written by --record")
        return sources.session_source(rest, config.audio.realtime, block)
    raise UserError(f"unknown source {spec!r}; use mic, file:PATH, session:DIR or browser")


def check_stereo(path: Path) -> None:
    """Split channels need two: say so before anything loads, naming the file."""
    from core.audio import AudioError, stream

    try:
        first = next(stream(path, mono=False), None)
    except AudioError as exc:
        raise UserError(str(exc)) from None
    channels = 0 if first is None else first.shape[1]
    if channels < 2:
        raise UserError(f"--channels split: {path} has {channels} channel(s); give a stereo file with one "
                        "microphone per channel, or use --channels mix")


def make_segmenter(config: Config, encoder: Any = None) -> Any:
    """The VAD segmenter, with the speaker stage after it: voices told apart (streamer/speakers.py),
    or one segmenter per channel (streamer/channels.py), or none when speakers are off. Voiceprints
    are read first, so a damaged one stops the start before any model loads."""
    from streamer.segmenter import Segmenter

    if config.audio.channels == "split":
        from streamer.channels import ChannelSegmenter

        keep_s = config.vad.max_utterance_s + 2 * config.vad.speech_pad_ms / 1000 + 1.0
        return ChannelSegmenter([Segmenter(config.vad), Segmenter(config.vad)], config.speakers.channel_roles, keep_s)
    if config.speakers.max_speakers == 0:
        return Segmenter(config.vad)
    from core import voiceprints
    from core.attribution import SpeakerTracker
    from core.speakers import SpeakerEncoder
    from streamer.speakers import SpeakerStage

    enrolled = voiceprints.load_all(voiceprints.resolve_dir(config.speakers.voiceprints))
    tracker = SpeakerTracker(config.speakers.max_speakers, config.speakers.new_speaker_similarity,
                             {role: vp.embedding for role, vp in enrolled.items()})
    encoder = encoder or SpeakerEncoder(config.speakers.device)
    return SpeakerStage(Segmenter(config.vad), encoder, tracker, config.speakers.change_similarity)


def browser_enrolment(config: Config, segmenter: Any) -> Any:
    """The dashboard's "enroll my voice", when this session tells voices apart."""
    from core.voiceprints import resolve_dir
    from streamer.enroll import BrowserEnrolment
    from streamer.speakers import SpeakerStage

    if not isinstance(segmenter, SpeakerStage):
        return None
    return BrowserEnrolment(segmenter.encoder, segmenter.tracker, resolve_dir(config.speakers.voiceprints), config.vad)


def load_pipeline(config: Config) -> tuple[Any, Any]:
    """The segmenter (with its speaker stage) and the analyzer (Whisper and the emotion bundle:
    seconds to load)."""
    from streamer.analyzer import Analyzer

    segmenter = make_segmenter(config)
    return segmenter, Analyzer(config)


async def serve(config: Config, *, exit_at_end: bool = False) -> int:
    """Load, serve, analyse; after the source ends keep serving until a signal unless `exit_at_end`."""
    check_exposure(config.server)
    source = make_source(config)
    mic_problem = None
    if isinstance(source, sources.MicSource):
        try:
            source.open()
        except MicUnavailable as exc:
            mic_problem = str(exc)
            source = sources.BrowserSource()
    record_dir = Path(config.record.dir).expanduser() if config.record.dir else None
    if record_dir is not None:
        try:
            record_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the record folder {record_dir} ({exc.strerror}); pick a writable --record DIR") from None
    print("streamer: loading models ...", file=sys.stderr, flush=True)
    segmenter, analyzer = await asyncio.to_thread(load_pipeline, config)
    log = feed.SessionLog(feed.new_session_id())
    server = FeedServer(config.server, log, lambda: session.hello(), record_dir=record_dir)
    recorder = None
    if record_dir is not None:
        recorder = Recorder(record_dir, log, {"source": source.name, "language": config.asr.language,
                                              "models": analyzer.models(), "config": _redacted(config)})
    session = Session(config, source, segmenter, analyzer, log, server=server, recorder=recorder)
    server.enrolment = browser_enrolment(config, segmenter)
    await server.start()
    token = "?token=..." if config.server.token else ""
    print(f"streamer: session {log.session_id}, serving http://{config.server.host}:{server.port}/{token} "
          f"(feed ws://{config.server.host}:{server.port}/ws)", file=sys.stderr, flush=True)
    if mic_problem:
        session.report("no_microphone", f"{mic_problem}. Serving on: the dashboard's microphone button is the input")
    stop = stop_on_signals()
    running = asyncio.create_task(session.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        running.cancel()
    reason = (await asyncio.gather(running, return_exceptions=True))[0]
    print(f"streamer: session ended ({reason if isinstance(reason, str) else 'shutdown'}), "
          f"{session.counters.utterances} utterances", file=sys.stderr, flush=True)
    if not exit_at_end and not stop.is_set():
        print("streamer: still serving the finished session; Ctrl-C to stop", file=sys.stderr, flush=True)
        await stop.wait()
    stopping.cancel()
    await server.close()
    return 0


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    return asyncio.run(serve(config, exit_at_end=args.exit_at_end))
