"""The daemon's settings: its own sections of config.toml ([server], [audio], [vad], [record]) and
the shared ones ([asr], [emotion], [speakers], core/config.py), read and checked by `core.config.load`.

The ranges here are the ones the daemon can run with: a value outside them (a port of 70000, a
VAD threshold of 1.5, a client queue of 0) is refused when the file is read, with the key, the
file and the allowed range, instead of starting a daemon that fails later.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import config as core_config
from core.config import AsrConfig, EmotionConfig, SpeakersConfig, setting

# A long utterance is cut at the quietest moment of its last second (streamer/segmenter.py), so it
# must be able to hold two seconds.
MIN_UTTERANCE_S = 2.0


@dataclass
class ServerConfig:
    """Where the dashboard and the feed are served, and the limits every client lives with."""

    host: str = "127.0.0.1"
    port: int = setting(8765, min=0, max=65535)  # 0 = any free port
    token: str = ""  # required (16 characters or more) whenever host is not a loopback address
    allowed_hosts: list[str] = setting(default_factory=list)  # names the daemon answers to besides loopback and host
    max_message_bytes: int = setting(262_144, min=1024, max=64 * 2**20)  # cap on any frame a client sends
    client_queue: int = setting(512, min=16, max=1_000_000)  # messages waiting per client before a slow client is dropped
    ping_interval_s: float = setting(20.0, above=0.0, max=3600.0)
    ping_timeout_s: float = setting(20.0, above=0.0, max=3600.0)
    max_rooms: int = setting(8, min=1, max=64)  # rooms one daemon serves; one more is refused


@dataclass
class AudioConfig:
    """Where audio comes from and how much of it may wait for analysis."""

    source: str = "mic"  # "mic", "file:PATH", "session:DIR" or "browser"
    rooms: list[str] = setting(default_factory=list)  # "NAME=SPEC" each: several rooms instead of `source`
    device: str = ""  # microphone name or index; "" = the system default
    realtime: bool = True  # files play at real time; False = as fast as the machine goes
    block_ms: int = setting(32, min=4, max=1000)  # capture block; Silero VAD wants 512 samples at 16 kHz
    queue_s: float = setting(20.0, above=0.0, max=3600.0)  # audio waiting for analysis before live input is dropped
    channels: str = setting("mix", choices=("mix", "split"))  # "split": each channel of a stereo input is one speaker


@dataclass
class VadConfig:
    """How the stream is cut into utterances (streamer/segmenter.py)."""

    threshold: float = setting(0.5, above=0.0, max=0.99)
    min_silence_ms: int = setting(500, min=0, max=10_000)  # silence that ends an utterance
    speech_pad_ms: int = setting(150, min=0, max=2000)  # audio kept before and after speech (150: see eager_silence_ms)
    min_speech_ms: int = setting(250, min=0, max=10_000)  # shorter bursts are noise, not utterances
    max_utterance_s: float = setting(15.0, min=MIN_UTTERANCE_S, max=30.0)  # long speech is cut here
    eager_silence_ms: int = setting(150, min=0, max=10_000)  # start analysing after this much silence; 0 = off (config.toml: why 150)

    def __post_init__(self) -> None:
        if self.eager_silence_ms and not self.speech_pad_ms <= self.eager_silence_ms < self.min_silence_ms:
            raise ValueError(f"eager_silence_ms = {self.eager_silence_ms} must be 0 (off) or at least speech_pad_ms "
                             f"({self.speech_pad_ms}: the padded end must have been heard) and below min_silence_ms "
                             f"({self.min_silence_ms})")


@dataclass
class RecordConfig:
    """Session recording."""

    dir: str = ""  # "" = do not record; else each session becomes a folder under it


@dataclass
class Config:
    """Everything `python -m streamer` reads."""

    server: ServerConfig = field(default_factory=ServerConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)


def load_config(path: str | Path | None = None) -> Config:
    """The daemon's settings from a config file (None = all defaults), checked."""
    return core_config.load(path, Config)


def override(config: Config, dotted: dict[str, Any]) -> Config:
    """`config` with command-line values (`{"server.port": 0}`) put in, checked like the file."""
    return core_config.override(config, dotted)
