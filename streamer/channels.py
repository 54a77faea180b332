"""Two microphones: each channel of a stereo input is one speaker (`audio.channels = "split"`).

Each channel has its own VAD segmenter, so speech that overlaps gives two utterances, one per
channel. A voice also reaches the other person's microphone, more quietly: that channel's VAD
hears it too. An utterance is kept only if its own channel is the louder one in at least
MIN_OWN_SHARE of its speech frames (frames within SPEECH_RANGE_DB of the utterance's loudest);
otherwise it is the other voice bleeding in, and the other channel's own utterance has it. Two
people talking at once are each louder at their own microphone often enough to both be kept.

The speaker is the channel: channel 1 is S1 and channel 2 is S2, with `speakers.channel_roles`
as their roles. Inputs with more channels use the first two.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from core.attribution import channel_attribution
from core.audio import SAMPLE_RATE
from streamer.segmenter import BadAudio, EagerEnd, Segmenter, SpeechUpdate, Utterance
from streamer.speakers import Numbering

CHANNELS = 2
FRAME = 512
MIN_OWN_SHARE = 0.3
SPEECH_RANGE_DB = 30.0


class ChannelSegmenter:
    """Segmenter-like (push, flush, position, speaking, levels) over (samples, channels) blocks."""

    def __init__(self, segmenters: list[Segmenter], roles: list[str], keep_s: float) -> None:
        if len(segmenters) != CHANNELS:
            raise ValueError(f"split channels need {CHANNELS} segmenters, got {len(segmenters)}")
        self.segmenters = segmenters
        self.roles = roles
        self.ids = Numbering()
        self.bleed_dropped = 0  # utterances given to the other, louder channel
        self._keep = int(keep_s * SAMPLE_RATE)  # recent audio of both channels, for the loudness check
        self._recent = np.zeros((0, CHANNELS), dtype=np.float32)
        self._recent_start = 0

    @property
    def position(self) -> float:
        return self.segmenters[0].position

    @property
    def speaking(self) -> bool:
        return any(s.speaking for s in self.segmenters)

    @property
    def level_db(self) -> float:
        return max(s.level_db for s in self.segmenters)

    def take_peak_level_db(self) -> float:
        return max([s.take_peak_level_db() for s in self.segmenters])

    def push(self, frames: np.ndarray) -> list[Any]:
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] < CHANNELS:
            raise BadAudio(f"split channels need {CHANNELS} channels, got a block of shape {frames.shape}; "
                           "give a stereo input, or use audio.channels = \"mix\"")
        frames = frames[:, :CHANNELS]
        self._remember(frames)
        return self._merge([s.push(np.ascontiguousarray(frames[:, c])) for c, s in enumerate(self.segmenters)])

    def flush(self) -> list[Any]:
        return self._merge([s.flush() for s in self.segmenters])

    def _remember(self, frames: np.ndarray) -> None:
        self._recent = np.concatenate([self._recent, frames.astype(np.float32, copy=False)])
        extra = len(self._recent) - self._keep
        if extra > 0:
            self._recent = self._recent[extra:]
            self._recent_start += extra

    def _merge(self, per_channel: list[list[Any]]) -> list[Any]:
        tagged = [(c, event) for c, events in enumerate(per_channel) for event in events]
        tagged.sort(key=lambda item: getattr(item[1], "start", 0.0))
        out = []
        for channel, event in tagged:
            if isinstance(event, Utterance):
                if not self.is_own(channel, event.start, event.end):
                    self.bleed_dropped += 1
                    continue
                speaker = channel_attribution(channel, self.roles).to_json()
                out.append(dataclasses.replace(event, id=self.ids.take(), speaker=speaker))
            elif isinstance(event, SpeechUpdate):
                if self.is_own(channel, event.start, event.now):
                    out.append(dataclasses.replace(event, id=self.ids.peek(),
                                                   speaker=channel_attribution(channel, self.roles).to_json()))
            elif isinstance(event, EagerEnd):  # the id it gets if nothing else is cut first (else dropped)
                utterance = event.utterance
                if self.is_own(channel, utterance.start, utterance.end):
                    speaker = channel_attribution(channel, self.roles).to_json()
                    out.append(EagerEnd(dataclasses.replace(utterance, id=self.ids.peek(), speaker=speaker)))
            else:
                out.append(event)
        return out

    def is_own(self, channel: int, start: float, end: float) -> bool:
        """Is `channel` the louder one often enough over [start, end) to be this voice's own?"""
        first = max(int(start * SAMPLE_RATE) - self._recent_start, 0)
        last = max(int(end * SAMPLE_RATE) - self._recent_start, first)
        span = self._recent[first:last]
        n = len(span) // FRAME
        if n == 0:
            return True
        power = np.mean(np.square(span[: n * FRAME].reshape(n, FRAME, CHANNELS), dtype=np.float64), axis=1)
        loudest = power.max(axis=1)
        speech = loudest >= loudest.max() * 10 ** (-SPEECH_RANGE_DB / 10)
        own = power[:, channel] >= power[:, 1 - channel]
        return float(own[speech].mean()) >= MIN_OWN_SHARE
