"""Archives: many recordings analysed into one output folder, resumably, locally or on a Ray cluster.

An archive job is a list of `Job`s (input file -> output JSONL), planned from files, folders
(searched recursively for audio) and globs. Each output is written as `NAME.jsonl.part` and renamed
to `NAME.jsonl` only when its file is done, so after a crash a complete result is skipped on the
next run (unless `--overwrite`) and a cut-off one is redone. `summary.json` says, per file, the
audio seconds, utterances, wall seconds and the error if it failed; it is rewritten atomically
after every file, so it is never behind by more than the files in flight.

Where the files are analysed is the runner's business: `run_local` (this process, several files in
flight on one copy of the models) or `streamer/cluster.py` (Ray actors). Both produce the same
`FileResult`s through `analyze_one`, so the outputs are the same.
"""
from __future__ import annotations

import asyncio
import glob
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from core.audio import duration_s
from core.errors import UserError
from streamer.config import Config

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".wma", ".aif",
                              ".aiff", ".webm", ".mp4", ".mkv", ".mov"})
SUMMARY = "summary.json"
PART = ".part"


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes; `name` is its path relative to what was given."""

    input: Path
    name: str
    output: Path

    @property
    def partial(self) -> Path:
        return self.output.with_name(self.output.name + PART)


@dataclass
class FileResult:
    """One file's line of summary.json."""

    input: str
    output: str | None  # None when the file failed: no output is written for it
    audio_s: float = 0.0
    utterances: int = 0
    wall_s: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: bool = False  # complete from an earlier run

    @property
    def failed(self) -> bool:
        return self.error is not None


def inputs(paths: Iterable[str]) -> list[tuple[Path, str]]:
    """(file, name relative to what was given) for files, folders (recursive, audio extensions only)
    and globs, in a stable order; UserError for a path that matches nothing or two inputs that would
    write the same output."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            found.append((path, path.name))
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
            if not files:
                raise UserError(f"{path} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
            found += [(p, p.relative_to(path).as_posix()) for p in files]
        elif glob.has_magic(raw):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(raw), recursive=True) if Path(m).is_file())
            if not matches:
                raise UserError(f"{raw} matches no file")
            found += [(m, m.name) for m in matches]
        else:
            raise UserError(f"{path} does not exist; give audio files, folders of them, or globs such as 'calls/*.wav'")
    by_name: dict[str, Path] = {}
    for file, name in found:
        if name in by_name and by_name[name].resolve() != file.resolve():
            raise UserError(f"{by_name[name]} and {file} would both be written as {name}.jsonl; analyze them in two runs "
                            "or give their common folder instead")
        by_name[name] = file
    return [(file, name) for name, file in by_name.items()]


def plan(paths: Iterable[str], out: Path) -> list[Job]:
    """The jobs for `paths` with their outputs under the folder `out` (mirroring relative paths)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; with several inputs (or a folder) --out must be a folder")
    return [Job(file, name, out / f"{name}.jsonl") for file, name in inputs(paths)]


class Summary:
    """summary.json of an output folder: one FileResult per input, kept across runs."""

    def __init__(self, folder: Path):
        self.path = folder / SUMMARY
        self.files: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.files = {f["input"]: f for f in json.loads(self.path.read_text(encoding="utf-8"))["files"]}
            except (ValueError, KeyError, TypeError):
                self.files = {}  # a damaged summary only costs the numbers of files done earlier

    def previous(self, job: Job) -> FileResult:
        """The result a complete output had when it was written (or what can be read off the file)."""
        old = self.files.get(str(job.input))
        if old and not old.get("error"):
            known = {k: v for k, v in old.items() if k in FileResult.__dataclass_fields__}
            return FileResult(**{**known, "skipped": True})
        lines = sum(1 for line in job.output.read_text(encoding="utf-8").splitlines() if line.strip())
        return FileResult(str(job.input), str(job.output), audio_s=duration_s(job.input) or 0.0, utterances=lines,
                          skipped=True)

    def keep(self, jobs: list[Job]) -> None:
        """Forget files that are not inputs of this run (the summary describes this job)."""
        wanted = {str(job.input) for job in jobs}
        self.files = {k: v for k, v in self.files.items() if k in wanted}

    def record(self, result: FileResult) -> None:
        self.files[result.input] = asdict(result)
        self.save()

    def save(self) -> None:
        results = sorted((FileResult(**f) for f in self.files.values()), key=lambda r: r.input)
        data = {
            "files": [asdict(r) for r in results],
            "totals": {"files": len(results), "failed": sum(r.failed for r in results),
                       "audio_s": round(sum(r.audio_s for r in results), 3),
                       "utterances": sum(r.utterances for r in results)},
        }
        tmp = self.path.with_name(SUMMARY + PART)
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def todo(jobs: list[Job], summary: Summary, overwrite: bool) -> tuple[list[Job], list[FileResult]]:
    """The jobs to run now, and the results of the ones complete from an earlier run."""
    run, done = [], []
    for job in jobs:
        if job.output.is_file() and not overwrite:
            done.append(summary.previous(job))
        else:
            job.partial.unlink(missing_ok=True)  # cut off by a crash: redone from the start
            run.append(job)
    return run, done


async def analyze_one(job_input: Path | bytes, name: str, config: Config, analyzer: Any,
                      speaker_encoder: Any = None) -> tuple[str, FileResult]:
    """One file through a Session: (its JSONL text, its result). Never raises for a bad file: the
    reason is the result's error. Each file is its own conversation: its own speaker history."""
    from streamer.analyze import analyze_file
    from streamer.run import make_segmenter

    started = time.perf_counter()
    out = io.StringIO()
    try:
        segmenter = make_segmenter(config, speaker_encoder)
        result = await analyze_file(job_input, config, segmenter, analyzer, out, name=name)
    except Exception as exc:  # a bug on one file must not stop the archive; the summary names it
        return "", FileResult(name, "", error=f"{type(exc).__name__}: {exc}", wall_s=time.perf_counter() - started)
    problems = [e["message"] for e in result["errors"]]
    failed = result.get("reason") == "source failed"
    return out.getvalue(), FileResult(
        name, "", audio_s=float(result.get("duration", 0.0)), utterances=int(result.get("utterances", 0)),
        wall_s=round(time.perf_counter() - started, 3), error=problems[-1] if failed and problems else None,
        warnings=problems if not failed else problems[:-1],
    )


def write_result(job: Job, text: str, result: FileResult) -> FileResult:
    """Write a finished file's output (.part, then renamed) and return its result with its paths."""
    result.input, result.output = str(job.input), None if result.failed else str(job.output)
    if result.failed:
        return result
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.partial.write_text(text, encoding="utf-8")
    os.replace(job.partial, job.output)
    return result


async def run_local(jobs: list[Job], config: Config, in_flight: int, done: Callable[[FileResult], None],
                    progress: Callable[[float], None]) -> None:
    """Analyse `jobs` in this process, `in_flight` files at a time on one copy of the models, their
    utterances transcribed in batches (streamer/asr_queue.py); `done` gets each result as it
    finishes, `progress` the audio seconds analysed so far, twice a second."""
    from streamer.run import load_pipeline

    segmenter, analyzer = await asyncio.to_thread(load_pipeline, config)
    encoder = getattr(segmenter, "encoder", None)  # the speaker encoder, loaded once for every file
    analyzer.share()
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    finished_s = 0.0

    async def worker() -> None:
        nonlocal finished_s
        while not queue.empty():
            job = queue.get_nowait()
            text, result = await analyze_one(job.input, job.name, config, analyzer.sibling(), encoder)
            finished_s += result.audio_s
            done(await asyncio.to_thread(write_result, job, text, result))

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(in_flight, len(jobs))))]
    try:
        while not all(w.done() for w in workers):
            progress(finished_s)
            await asyncio.wait(workers, timeout=0.5)
        for w in workers:
            w.result()
    finally:
        analyzer.close()
