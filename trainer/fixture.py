"""Write a small synthetic AI Hub dataset in the delivered layout, learnable from text and audio.

No labelled Korean emotion data can be downloaded here, yet prepare, training and the tests need
something shaped exactly like dataset 263: three releases, each a cp949 CSV with the official
header and a ZIP of 48 kHz mono PCM16 wavs, with the delivery's blemishes (rows without audio, a
wav without a row, emotion names in odd case, the seed's ``happines:`` truncation).

Both modalities carry a class signal, with noise so a model has something to learn:
- text: Korean sentences around class phrases; one in five borrows its main phrase from another
  class, and context words are shared by all classes;
- audio: voiced "syllables" (harmonic series under an envelope) whose pitch, pitch contour,
  loudness, brightness and speaking rate depend on the class, varied per speaker and utterance.

Annotator columns are drawn at random (with disagreement) and kept only if the seed label rule
gives the intended class, so the fixture's labels are exactly what prepare should produce.
Everything is a function of ``--seed``.
"""
from __future__ import annotations

import argparse
import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import UserError
from core.labels import LABELS
from trainer.aihub import COLUMNS, RELEASES
from trainer.label_rules import EMOTIONS, decide

RATE = 48_000  # as delivered
TABLE_SIZE = 4096
TABLE_PHASE = 2 * np.pi * np.arange(TABLE_SIZE) / TABLE_SIZE

PHRASES: dict[str, tuple[str, ...]] = {
    "angry": ("진짜 화가 나", "짜증 나 죽겠어", "어떻게 이럴 수가 있어", "열받아서 참을 수가 없어",
              "정말 어이가 없네", "왜 맨날 나한테만 그래", "너무 억울하고 화나"),
    "happiness": ("너무 기뻐", "정말 신난다", "오늘 진짜 행복해", "기분이 최고야",
                  "드디어 합격했어", "선물 받아서 좋아", "웃음이 멈추지 않아"),
    "neutral": ("내일 회의가 있어", "점심은 김밥 먹었어", "버스 타고 가는 중이야", "그냥 평소랑 같아",
                "주말에 청소했어", "일정 확인해 볼게", "날씨가 좀 흐리네"),
    "sadness": ("너무 우울해", "눈물이 나", "요즘 많이 외로워", "마음이 너무 아파",
                "아무것도 하기 싫어", "힘들고 지쳐", "보고 싶어서 슬퍼"),
    "surprise": ("헐 진짜야", "깜짝 놀랐어", "말도 안 돼 대박"),
    "fear": ("너무 무서워", "밤길이 겁나", "불안해서 잠이 안 와"),
    "disgust": ("역겨워", "정말 더러워", "보기만 해도 싫어"),
}
CONTEXT = ("오늘", "어제", "회사에서", "친구랑 얘기하다가", "집에 오는 길에", "엄마가 그러는데", "아까", "")
ENDINGS = (".", "!", "?", "...", " 진짜.", " 그렇지?")
BORROW = 0.2  # share of sentences whose main phrase comes from another class


@dataclass(frozen=True)
class Voice:
    f0: float  # Hz
    contour: float  # semitones of pitch change over the utterance
    loudness: float  # peak amplitude of a syllable
    rate: float  # syllables per second
    tilt: float  # harmonic k has amplitude 1 / k**tilt: lower is brighter


VOICES: dict[str, Voice] = {
    "angry": Voice(185.0, 2.0, 0.50, 6.0, 0.7),
    "happiness": Voice(235.0, 4.0, 0.38, 5.0, 1.0),
    "neutral": Voice(150.0, 0.0, 0.22, 4.0, 1.2),
    "sadness": Voice(120.0, -3.0, 0.12, 2.6, 1.5),
    "surprise": Voice(260.0, 6.0, 0.40, 4.5, 0.9),
    "fear": Voice(210.0, 1.0, 0.18, 5.5, 1.3),
    "disgust": Voice(140.0, -1.0, 0.30, 3.0, 1.0),
}


@dataclass
class FixtureRow:
    wav_id: str
    release: str
    intended: str  # what the seed rule makes of the annotations
    cells: list[str]  # one CSV line, COLUMNS order
    audio: np.ndarray | None  # 48 kHz float; None for a row delivered without audio


@dataclass
class FixtureSummary:
    """What prepare should find, for tests and the benchmark."""

    rows_per_label: int
    rows: int = 0
    kept: dict[str, list[str]] = field(default_factory=dict)  # label -> ids (seed rule)
    other_emotions: dict[str, str] = field(default_factory=dict)  # id -> winner dropped by the seed rule
    no_audio: list[str] = field(default_factory=list)
    wavs_without_row: list[str] = field(default_factory=list)


def sentence(label: str, rng: np.random.Generator) -> str:
    source = label
    if label in LABELS and rng.random() < BORROW:
        source = str(rng.choice([name for name in LABELS if name != label]))
    parts = [str(rng.choice(CONTEXT)), str(rng.choice(PHRASES[source]))]
    if rng.random() < 0.4:
        parts.append(str(rng.choice(PHRASES[label])))
    return " ".join(p for p in parts if p) + str(rng.choice(ENDINGS))


def annotations(label: str, rng: np.random.Generator) -> list[tuple[str, int]]:
    """Five (emotion, intensity) pairs, often disagreeing, for which the seed rule gives ``label``."""
    while True:
        if label == "neutral":
            # neutral wins only if every other chosen emotion sums to 0: a dissenter at 0 loses
            # on the vote count
            pairs = [("neutral", 0)] * 5
            if rng.random() < 0.3:
                pairs[int(rng.integers(5))] = (str(rng.choice([e for e in EMOTIONS if e != "neutral"])), 0)
        else:
            agree = int(rng.choice([5, 4, 3, 3, 2]))
            pairs = [(label, int(rng.integers(1, 3))) for _ in range(agree)]
            for _ in range(5 - agree):
                other = str(rng.choice([e for e in EMOTIONS if e != label]))
                pairs.append((other, 0 if other == "neutral" else int(rng.integers(1, 3))))
            rng.shuffle(pairs)
        if decide(pairs, "all7").label == label:
            return pairs


def spelled(emotion: str, rng: np.random.Generator) -> str:
    """An emotion name as annotators typed it: mostly plain, sometimes odd case or spacing."""
    if emotion == "happiness" and rng.random() < 0.15:
        return "happines:"  # the seed's scan shows this truncation throughout
    styles = (emotion, emotion.capitalize(), emotion.upper(), " " + emotion)
    return styles[int(rng.choice(4, p=[0.7, 0.15, 0.05, 0.1]))]


def synthesise(label: str, rng: np.random.Generator, duration: float | None = None) -> np.ndarray:
    """A 48 kHz utterance of voiced syllables in the class's voice, 1-4 s unless ``duration``."""
    voice = VOICES[label]
    # speakers, microphones and rooms differ: classes overlap on every cue
    f0 = voice.f0 * rng.uniform(0.75, 1.3) * np.exp(rng.normal(0, 0.06))
    rate = voice.rate * np.exp(rng.normal(0, 0.2))
    loudness = min(0.9, voice.loudness * np.exp(rng.normal(0, 0.4)))
    tilt = voice.tilt + rng.normal(0, 0.25)
    seconds = duration if duration is not None else float(rng.uniform(1.0, 4.0))
    total = int(seconds * RATE)
    out = np.zeros(total, dtype=np.float64)
    # one period as a table, read at the instantaneous phase (15 sines per sample are slow),
    # with the harmonics that stay below 16 kHz's Nyquist at the highest pitch reached
    harmonics = np.arange(1, 16)
    audible = harmonics[harmonics * f0 * 2 ** (max(voice.contour, 0) / 12) * 1.02 < 7500]
    period = (np.sin(np.outer(TABLE_PHASE, audible)) / audible ** tilt).sum(axis=1)
    start = 0.08
    while start < seconds - 0.12:
        length = min(rng.uniform(0.55, 0.8) / rate, seconds - start - 0.02)
        n = int(length * RATE)
        t = np.arange(n) / RATE
        position = (start + t) / seconds  # 0..1 over the utterance
        freq = f0 * 2 ** (voice.contour * position / 12) * (1 + 0.015 * np.sin(2 * np.pi * 5.5 * t))
        cycles = np.cumsum(freq) / RATE
        wave = period[((cycles % 1.0) * TABLE_SIZE).astype(np.int64)]
        envelope = np.sin(np.pi * np.arange(n) / n) ** 0.6
        begin = int(start * RATE)
        out[begin:begin + n] += loudness * rng.uniform(0.7, 1.0) * envelope * wave / np.abs(wave).max()
        start += rng.uniform(0.85, 1.15) / rate + (0.2 if rng.random() < 0.1 else 0.0)
    out += rng.normal(0, rng.uniform(0.002, 0.02), total)
    return np.clip(out, -1, 1).astype(np.float32)


def _wav_id(rng: np.random.Generator) -> str:
    return rng.bytes(12).hex()  # 24 hex digits, like the delivered ids


def _row(label: str, release: str, rng: np.random.Generator, duration: float | None, with_audio: bool = True) -> FixtureRow:
    pairs = annotations(label, rng)
    cells = [_wav_id(rng), sentence(label, rng), spelled(label, rng)]
    for emotion, intensity in pairs:
        cells += [spelled(emotion, rng), str(intensity)]
    cells += [str(int(rng.integers(20, 70))), str(rng.choice(["female", "male"]))]
    audio = synthesise(label, rng, duration) if with_audio else None
    return FixtureRow(cells[0], release, label, cells, audio)


def build_rows(rows_per_label: int, seed: int, duration: float | None = None) -> tuple[list[FixtureRow], FixtureSummary]:
    """All rows, releases dealt round-robin, plus per release one row without audio, one row
    each of surprise / fear / disgust (dropped by the seed rule) and, in the last release, a
    wav without a row (its ``cells`` are emptied so it never reaches the CSV)."""
    rng = np.random.default_rng(seed)
    rows: list[FixtureRow] = []
    summary = FixtureSummary(rows_per_label)
    for label in LABELS:
        for i in range(rows_per_label):
            row = _row(label, RELEASES[i % len(RELEASES)], rng, duration)
            rows.append(row)
            summary.kept.setdefault(label, []).append(row.wav_id)
    for i, emotion in enumerate(("surprise", "fear", "disgust")):
        row = _row(emotion, RELEASES[i], rng, duration)
        rows.append(row)
        summary.other_emotions[row.wav_id] = emotion
    for i, release in enumerate(RELEASES):
        row = _row(LABELS[i], release, rng, duration, with_audio=False)
        rows.append(row)
        summary.no_audio.append(row.wav_id)
    summary.rows = len(rows)
    orphan = _row("neutral", RELEASES[-1], rng, duration)
    orphan.cells = []  # delivered as a wav only
    rows.append(orphan)
    summary.wavs_without_row.append(orphan.wav_id)
    return rows, summary


def _wav_bytes(audio: np.ndarray) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def write_dataset(out: Path, rows_per_label: int = 30, seed: int = 13, duration: float | None = None) -> FixtureSummary:
    """``{release}.csv`` (cp949) and ``{release}.zip`` for each release under ``out``."""
    rows, summary = build_rows(rows_per_label, seed, duration)
    out.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed + 1)
    for release in RELEASES:
        mine = [r for r in rows if r.release == release]
        mine = [mine[i] for i in order.permutation(len(mine))]  # labels interleaved, as delivered
        text = io.StringIO(newline="")
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        writer.writerows(r.cells for r in mine if r.cells)
        (out / f"{release}.csv").write_bytes(text.getvalue().encode("cp949"))
        with zipfile.ZipFile(out / f"{release}.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for row in mine:
                if row.audio is not None:
                    archive.writestr(f"{row.wav_id}.wav", _wav_bytes(row.audio))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write the three releases into")
    parser.add_argument("--rows-per-label", type=int, default=30, help="kept rows per label (default 30)")
    parser.add_argument("--seed", type=int, default=13, help="everything is a function of this")


def run(args: argparse.Namespace) -> int:
    if args.rows_per_label < 1:
        raise UserError(f"--rows-per-label {args.rows_per_label}: at least 1")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out}: exists and is not a folder")
    summary = write_dataset(args.out, args.rows_per_label, args.seed)
    print(f"Wrote {', '.join(RELEASES)} (.csv cp949 + .zip of 48 kHz PCM16 wavs) to {args.out}: "
          f"{summary.rows} rows; {args.rows_per_label} per label kept by the seed rule, "
          f"{len(summary.other_emotions)} other-emotion rows, {len(summary.no_audio)} rows without audio, "
          f"{len(summary.wavs_without_row)} wav without a row")
    return 0
