"""Archives on a Ray cluster (`analyze PATH... --out DIR --ray auto|ADDRESS`), for when one machine
is not enough. An optional extra: `pip install .[cluster]`.

Each Ray actor loads the models once (Whisper on a GPU where the cluster has one, one GPU per
actor) and analyses whole files with exactly the code of a local run (`archive.analyze_one`, the
same `Session`), so a file gives the same result here as on one machine. The driver reads each
input and sends its bytes, and writes the outputs and summary.json itself: the cluster's machines
need the project installed, not this machine's filesystem. A task whose actor dies (a node lost,
the process killed) is retried on a restarted actor; a file that cannot be analysed is a result
with an error, as locally.
"""
from __future__ import annotations

import asyncio
from dataclasses import asdict, replace
from typing import Any, Callable

from core.errors import UserError
from streamer.archive import FileResult, Job, analyze_one, write_result
from streamer.config import Config

RETRIES = 2  # restarts of a dead actor, and retries of the file it was analysing


class FileAnalyzer:
    """A Ray actor: the models, loaded once; one file at a time."""

    def __init__(self, config: Config) -> None:
        from streamer.run import load_pipeline

        self.config = config
        segmenter, self.analyzer = load_pipeline(config)
        self.encoder = getattr(segmenter, "encoder", None)

    def analyze(self, data: bytes, name: str) -> tuple[str, str, dict[str, Any]]:
        text, result = asyncio.run(analyze_one(data, name, self.config, self.analyzer.sibling(), self.encoder))
        return name, text, asdict(result)


def connect(address: str):
    """The ray module, connected to the cluster at `address` ('auto' = the one this machine is in)."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install '.[cluster]' (or pip install ray) on this machine and the cluster's") from None
    try:
        ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot reach a Ray cluster at {address!r} ({str(exc).splitlines()[0]}); start one with "
                        "`ray start --head` or give its HOST:PORT") from None
    return ray


def actor_shape(resources: dict[str, float], workers: int) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each): one actor per GPU when there are GPUs, else one per 2 CPUs,
    unless `workers` says how many."""
    cpus, gpus = float(resources.get("CPU", 1)), float(resources.get("GPU", 0))
    count = workers or (int(gpus) if gpus >= 1 else max(1, int(cpus // 2)))
    return count, cpus / count, min(1.0, gpus / count)


def run(jobs: list[Job], config: Config, address: str, workers: int, done: Callable[[FileResult], None],
        progress: Callable[[float], None]) -> None:
    """Analyse `jobs` on the cluster, one file per actor at a time; `done` gets each result in the
    order files finish."""
    ray = connect(address)
    try:
        count, cpus, gpus = actor_shape(ray.cluster_resources(), workers)
        # Whisper's threads per actor follow the CPUs Ray gives it, so actors do not fight over cores.
        actor_config = replace(config, asr=replace(config.asr, cpu_threads=max(1, int(cpus))))
        Actor = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=RETRIES, max_task_retries=RETRIES)(FileAnalyzer)
        idle = [Actor.remote(actor_config) for _ in range(min(count, max(1, len(jobs))))]
        waiting, running, finished_s = list(reversed(jobs)), {}, 0.0
        while waiting or running:
            while waiting and idle:
                job, actor = waiting.pop(), idle.pop()
                running[actor.analyze.remote(job.input.read_bytes(), str(job.input))] = (job, actor)
            (ref,), _ = ray.wait(list(running), num_returns=1)
            job, actor = running.pop(ref)
            idle.append(actor)
            try:
                _name, text, result = ray.get(ref)
                outcome = write_result(job, text, FileResult(**result))
            except ray.exceptions.RayError as exc:  # the actor kept dying on this file: retries exhausted
                outcome = write_result(job, "", FileResult(job.name, "", error=f"lost on the Ray cluster after {RETRIES} "
                                                                               f"retries ({type(exc).__name__})"))
            finished_s += outcome.audio_s
            done(outcome)
            progress(finished_s)
    finally:
        ray.shutdown()
