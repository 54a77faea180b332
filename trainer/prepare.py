"""Read the AI Hub releases into OUT/manifest.jsonl, OUT/report.json and OUT/splits.json.

Bad rows never stop a run: each becomes a count with its ids in report.json. A row is dropped
for the first of these that applies, in this order: malformed_row, missing_wav_id,
duplicate_wav_id (the first occurrence, in release order 4차년도, 5차년도, 5차년도_2차 and then
CSV order, is kept), no_audio, empty_text, unknown_emotion, bad_intensity, the label rule's
reason (winner_<emotion>, below_min_agreement), then empty_audio and unreadable_audio once the
surviving rows' audio is decoded. Only rows that survive the label rule are decoded.

Problems the user must fix (no folder, no release, a CSV in an unknown encoding or with a wrong
header, an unreadable ZIP, bad options) stop the run with one line saying what and where.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from core.labels import LABELS
from trainer.aihub import RELEASES, Release, find_releases, load_release
from trainer.audio_cache import (
    SAMPLE_RATE,
    AudioCache,
    AudioSource,
    DecodeJob,
    DecodeResult,
    close_zips,
    decode_to_cache,
)
from trainer.label_rules import (
    EMOTIONS,
    RULES,
    decide,
    normalise_emotion,
    parse_intensity,
)
from trainer.manifest import Record, Splits, write_manifest, write_splits

SPEAKER_NOTE = (
    "The AI Hub data has no speaker ids, so these splits are random over utterances and NOT "
    "speaker-independent: the same speaker can appear in train and test, and scores on them "
    "overestimate performance on new speakers."
)
REPORT = "report.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--aihub", type=Path, required=True,
                        help="folder holding 4차년도, 5차년도, 5차년도_2차 (CSV + ZIP or wav folder each)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    parser.add_argument("--label-rule", choices=RULES, default="seed",
                        help="seed: largest intensity sum, ties to the most chosen (default); "
                             "majority: most chosen with --min-agreement votes; "
                             "all7: seed rule keeping all 7 emotions (labels beyond the four; for analysis)")
    parser.add_argument("--min-agreement", type=int, default=3, help="votes out of 5 for --label-rule majority")
    parser.add_argument("--seed", type=int, default=13, help="random seed of the splits")
    parser.add_argument("--val", type=float, default=0.1, help="fraction of each label for validation")
    parser.add_argument("--test", type=float, default=0.1, help="fraction of each label for test")
    parser.add_argument("--folds", type=int, default=5, help="stratified folds over train, for stacking")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="decoding processes (1 decodes in this process)")


@dataclass
class Drops:
    """Dropped rows by reason, with ids (and a detail per id where one helps)."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    details: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, reason: str, wav_id: str, detail: str | None = None) -> None:
        self.ids.setdefault(reason, []).append(wav_id)
        if detail is not None:
            self.details.setdefault(reason, {})[wav_id] = detail

    def as_report(self) -> dict:
        return {
            reason: {"count": len(ids), "ids": ids, **({"details": self.details[reason]} if reason in self.details else {})}
            for reason, ids in sorted(self.ids.items())
        }


@dataclass
class Candidate:
    """A row that passed every check but its audio."""

    record: Record
    key: str  # cache key, release/wav_id
    source: AudioSource


def _check_options(args: argparse.Namespace) -> None:
    if not 1 <= args.min_agreement <= 5:
        raise UserError(f"--min-agreement {args.min_agreement}: must be 1..5 (votes out of five annotators)")
    if args.val < 0 or args.test < 0 or args.val + args.test >= 1:
        raise UserError(f"--val {args.val} --test {args.test}: each >= 0 and together below 1")
    if args.folds < 2:
        raise UserError(f"--folds {args.folds}: at least 2")
    if args.workers < 1:
        raise UserError(f"--workers {args.workers}: at least 1")


def _parse_age(raw: str) -> int | None:
    try:
        return int(float(raw))
    except (ValueError, OverflowError):  # "", "미상", "inf"
        return None


def _screen(releases: list[Release], args: argparse.Namespace, drops: Drops,
            mapped: Counter, unresolved: list[str]) -> list[Candidate]:
    """Apply every row check and the label rule; what survives still needs its audio decoded."""
    first_seen: dict[str, str] = {}
    candidates = []
    for release in releases:
        for line, wav_id in release.malformed:
            drops.add("malformed_row", wav_id or f"{release.name}:{line}",
                      f"{release.name} line {line}: more cells than the header")
        for row in release.rows:
            where = f"{row.release} line {row.line}"
            if not row.wav_id:
                drops.add("missing_wav_id", f"{row.release}:{row.line}")
                continue
            if row.wav_id in first_seen:
                drops.add("duplicate_wav_id", row.wav_id, f"{where} repeats {first_seen[row.wav_id]}")
                continue
            first_seen[row.wav_id] = where
            source = release.audio.get(row.wav_id)
            if source is None:
                drops.add("no_audio", row.wav_id)
                continue
            if not row.text:
                drops.add("empty_text", row.wav_id)
                continue
            matches = [normalise_emotion(e) for e, _ in row.annotations]
            unknown = [e for (e, _), m in zip(row.annotations, matches) if m is None]
            if unknown:
                drops.add("unknown_emotion", row.wav_id, ", ".join(repr(e) for e in unknown))
                continue
            intensities = [parse_intensity(i, m.emotion) for (_, i), m in zip(row.annotations, matches)]
            if None in intensities:
                bad = [i for (_, i), v in zip(row.annotations, intensities) if v is None]
                drops.add("bad_intensity", row.wav_id, ", ".join(repr(i) for i in bad))
                continue
            for (raw, _), match in zip(row.annotations, matches):
                if match.truncated:
                    mapped[f"{raw.strip()} -> {match.emotion}"] += 1
            annotations = [(m.emotion, i) for m, i in zip(matches, intensities)]
            decision = decide(annotations, args.label_rule, args.min_agreement)
            if decision.label is None:
                drops.add(decision.drop_reason, row.wav_id)
                continue
            if decision.unresolved_tie:
                unresolved.append(row.wav_id)
            situation = normalise_emotion(row.situation)
            record = Record(
                wav_id=row.wav_id, text=row.text, label=decision.label,
                audio="", release=release.name, duration=0.0,  # both set once decoded
                annotations=[list(a) for a in annotations], age=_parse_age(row.age), gender=row.gender,
                situation=situation.emotion if situation else row.situation,
            )
            candidates.append(Candidate(record, f"{release.name}/{row.wav_id}", source))
    return candidates


def _decode_all(jobs: list[DecodeJob], workers: int) -> list[DecodeResult]:
    """Decode in a process pool (or inline with one worker), with a progress bar."""
    from tqdm import tqdm

    if not jobs:
        return []
    close_zips()  # no handle may be inherited by the workers
    with tqdm(total=len(jobs), unit="clip", desc="decoding audio", dynamic_ncols=True) as bar:
        if workers == 1:
            results = []
            try:
                for job in jobs:
                    results.append(decode_to_cache(job))
                    bar.update()
            finally:
                close_zips()
            return results
        from concurrent.futures import ProcessPoolExecutor

        chunk = max(1, min(32, len(jobs) // (workers * 8)))
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = []
            for result in pool.map(decode_to_cache, jobs, chunksize=chunk):
                results.append(result)
                bar.update()
            return results


def _attach_audio(candidates: list[Candidate], out: Path, workers: int, drops: Drops) -> tuple[list[Record], dict]:
    """Fill in durations from the cache, decoding what is missing or changed; drop bad audio."""
    started = time.perf_counter()
    cache = AudioCache(out / "audio")
    frames: dict[str, int] = {}
    todo: list[Candidate] = []
    for candidate in candidates:
        cached = cache.lookup(candidate.key, candidate.source.fingerprint)
        if cached is None:
            todo.append(candidate)
        else:
            frames[candidate.key] = cached
    results = _decode_all([DecodeJob(c.source, cache.path(c.key)) for c in todo], workers)
    for candidate, result in zip(todo, results):
        if result.error == "empty":
            drops.add("empty_audio", candidate.record.wav_id, candidate.source.describe())
        elif result.error:
            drops.add("unreadable_audio", candidate.record.wav_id, f"{candidate.source.describe()}: {result.error}")
        else:
            cache.store(candidate.key, candidate.source.fingerprint, result.frames)
            frames[candidate.key] = result.frames
    cache.save()
    records = []
    for candidate in candidates:
        if candidate.key in frames:
            candidate.record.audio = cache.path(candidate.key).relative_to(out).as_posix()
            candidate.record.duration = round(frames[candidate.key] / SAMPLE_RATE, 3)
            records.append(candidate.record)
    stats = {"decoded": len(todo), "from_cache": len(candidates) - len(todo),
             "seconds": round(time.perf_counter() - started, 3), "cache": str(cache.folder)}
    return records, stats


def stratified_splits(records: list[Record], seed: int, val: float, test: float, folds: int) -> Splits:
    """Per label: shuffle its sorted ids, cut test and val by fraction, deal train into folds.

    Dealing continues across labels so fold sizes differ by at most one; sorting first makes the
    result depend only on the ids and the seed, not on file order.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for record in records:
        by_label.setdefault(record.label, []).append(record.wav_id)
    train, val_ids, test_ids = [], [], []
    fold_ids: list[list[str]] = [[] for _ in range(folds)]
    dealt = 0
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        rng.shuffle(ids)
        n_test, n_val = round(len(ids) * test), round(len(ids) * val)
        test_ids += ids[:n_test]
        val_ids += ids[n_test:n_test + n_val]
        label_train = ids[n_test + n_val:]
        train += label_train
        for wav_id in label_train:
            fold_ids[dealt % folds].append(wav_id)
            dealt += 1
    return Splits(seed, sorted(train), sorted(val_ids), sorted(test_ids), [sorted(f) for f in fold_ids])


def _rjust(text: str, width: int) -> str:
    """Right-justify by terminal columns: Hangul takes two."""
    columns = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return " " * max(0, width - columns) + text


def _summary(report: dict, out: Path) -> str:
    lines = ["CSV encodings: " + ", ".join(f"{r['csv']} = {r['encoding']}" for r in report["releases"].values())]
    if report["releases_missing"]:
        lines.append("Releases not found: " + ", ".join(report["releases_missing"]))
    lines.append(f"Kept {report['kept']} utterances (label rule {report['label_rule']}):")
    per_release = report["releases"]
    header = "  " + f"{'label':<10}" + "".join(_rjust(name, 14) for name in per_release) + f"{'total':>8}"
    lines.append(header)
    for label in report["labels"]:
        cells = "".join(f"{per_release[name]['kept'].get(label, 0):>14}" for name in per_release)
        lines.append(f"  {label:<10}{cells}{report['labels'][label]:>8}")
    dropped = report["dropped"]
    lines.append(f"Dropped {sum(d['count'] for d in dropped.values())} rows:" if dropped else "Dropped no rows.")
    lines += [f"  {reason:<22}{d['count']:>7}" for reason, d in dropped.items()]
    lines.append(f"Wavs without a row: {report['wavs_without_row']['count']}")
    lines.append(f"Ties left after the tie-breaks (kept, first annotator's choice): {report['ties_unresolved']['count']}")
    if report["names_mapped"]:
        lines.append("Truncated emotion names mapped: "
                     + ", ".join(f"{k} ({n})" for k, n in report["names_mapped"].items()))
    audio = report["audio"]
    lines.append(f"Audio: {audio['decoded']} decoded, {audio['from_cache']} from cache, {audio['seconds']} s")
    lines.append(f"Note: {SPEAKER_NOTE}")
    lines.append(f"Wrote {out / 'manifest.jsonl'}, {out / REPORT}, {out / 'splits.json'}")
    return "\n".join(lines)


def prepare(args: argparse.Namespace) -> dict:
    """The whole command; returns the report it wrote."""
    _check_options(args)
    found = find_releases(args.aihub)
    releases = [load_release(files) for files in found.values()]
    for release in releases:
        print(f"{release.csv}: {release.encoding}, {len(release.rows)} rows, {len(release.audio)} wavs")
    args.out.mkdir(parents=True, exist_ok=True)

    drops, mapped, unresolved = Drops(), Counter(), []
    candidates = _screen(releases, args, drops, mapped, unresolved)
    records, audio_stats = _attach_audio(candidates, args.out, args.workers, drops)
    kept_ids = {r.wav_id for r in records}
    unresolved = [i for i in unresolved if i in kept_ids]
    splits = stratified_splits(records, args.seed, args.val, args.test, args.folds)

    label_order = EMOTIONS if args.label_rule == "all7" else LABELS
    wavs_without_row = []
    for release in releases:
        row_ids = {row.wav_id for row in release.rows} | {wav_id for _, wav_id in release.malformed}
        wavs_without_row += [wav_id for wav_id in release.audio if wav_id not in row_ids]
    report = {
        "label_rule": args.label_rule,
        "options": {"aihub": str(args.aihub), "min_agreement": args.min_agreement, "seed": args.seed,
                    "val": args.val, "test": args.test, "folds": args.folds, "workers": args.workers},
        "kept": len(records),
        "labels": {label: sum(r.label == label for r in records) for label in label_order},
        "releases": {
            release.name: {
                "csv": str(release.csv), "encoding": release.encoding,
                "audio": [str(p) for p in release.audio_containers],
                "rows": len(release.rows), "wavs": len(release.audio),
                "kept": {label: n for label in label_order
                         if (n := sum(r.label == label and r.release == release.name for r in records))},
                "unexpected_columns": release.extra_columns,
                "duplicate_audio": release.duplicate_audio,
            }
            for release in releases
        },
        "releases_missing": [name for name in RELEASES if name not in found],
        "dropped": drops.as_report(),
        "wavs_without_row": {"count": len(wavs_without_row), "ids": wavs_without_row},
        "ties_unresolved": {"count": len(unresolved), "ids": unresolved,
                            "rule": "kept with the tied emotion chosen by the lowest-numbered annotator"},
        "names_mapped": dict(mapped),
        "audio": audio_stats,
        "splits": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test),
                   "folds": [len(f) for f in splits.folds]},
        "speaker_independence": SPEAKER_NOTE,
    }
    write_manifest(args.out, records)
    write_splits(args.out, splits)
    (args.out / REPORT).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(_summary(report, args.out))
    return report


def run(args: argparse.Namespace) -> int:
    prepare(args)
    return 0
