"""Train the text, audio and multimodal models, stack them, and write reports and a model bundle.

What a run does, in order (every step is a "part" with a completion marker under OUT/work/):

1. each selected model is fitted on the train split (early stopping on validation where the model
   supports it) and predicts validation and test; the fitted model is saved;
2. per role (text, audio, multimodal) the model with the best validation macro-F1 is chosen;
3. with two or more roles, each chosen model is refitted k times, once per fold of splits.json,
   and predicts its held-out fold: the out-of-fold probabilities the stacker learns from;
4. the stacker is fitted on those, checked on validation (it falls back to the best base model
   when stacking does not help), and given a temperature if that lowers validation ECE;
5. metrics.json, summary.md and plots go to OUT, the bundle to OUT/bundle.

Interrupt it at any point and run the same command again: finished parts are read back, not
redone (a part is redone when its settings or the prepared data changed), and a fine-tuning
that was cut short continues from its last epoch checkpoint. `--fresh` starts over.

"all" means every known model whose weights are available here: a model that needs a download
this machine cannot make is skipped with the reason, and the summary lists it.

Several GPUs: start it with `torchrun --nproc_per_node N -m trainer train ...` or `accelerate
launch -m trainer train ...`; the models that train through transformers' Trainer or accelerate
spread over the GPUs, every process runs the same steps, and only the main process writes files.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from core.errors import UserError
from core.labels import LABELS
from core.models import MODEL_KINDS
from trainer.config import load_config, override
from trainer.fitting import MODELS

WORK = "work"
DONE = "done.json"
ATTEMPT = "attempt.txt"  # the settings an unfinished part was started with


def unavailable_reason(name: str) -> str | None:
    """Why a model cannot train here (a kind missing from this installation, or weights it would
    have to download), or None."""
    if MODELS[name].kind not in MODEL_KINDS:
        return f"model kind {MODELS[name].kind!r} is not part of this installation"
    return None


# ---------------------------------------------------------------- bookkeeping

class Run:
    """The output folder: per-part markers and arrays, written by the main process only."""

    def __init__(self, out: Path, data_fingerprint: str, main_process: bool, barrier: Callable[[], None]):
        self.out, self.data_fingerprint = out, data_fingerprint
        self.main, self.barrier = main_process, barrier

    def part(self, name: str, part: str) -> Path:
        return self.out / WORK / name / part

    def fingerprint(self, name: str, part: str, cfg: Any) -> str:
        spec = MODELS[name]
        payload = {"model": name, "kind": spec.kind, "part": part, "settings": spec.settings(cfg), "seed": cfg.seed,
                   "precision": cfg.precision, "data": self.data_fingerprint}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def is_done(self, folder: Path, fingerprint: str) -> bool:
        marker = folder / DONE
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("fingerprint") == fingerprint
        except ValueError:
            return False

    def start(self, folder: Path, fingerprint: str) -> None:
        """Clear what an earlier attempt left; keep its fine-tuning checkpoints only if it had the same settings."""
        if self.main:
            attempt = folder / ATTEMPT
            same = attempt.is_file() and attempt.read_text(encoding="utf-8").strip() == fingerprint
            if folder.exists():
                for child in folder.iterdir():
                    if not (same and child.name == "checkpoints"):
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            folder.mkdir(parents=True, exist_ok=True)
            attempt.write_text(fingerprint + "\n", encoding="utf-8")
        self.barrier()

    def finish(self, folder: Path, fingerprint: str, arrays: dict[str, Any], model: Any = None, **info: Any) -> None:
        import numpy as np

        if self.main:
            if model is not None:
                staging = folder / "model.part"
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                model.save(staging)
                os.replace(staging, folder / "model")
            for key, value in arrays.items():
                np.save(folder / f"{key}.npy", value)
            marker = {"fingerprint": fingerprint, "finished": time.strftime("%Y-%m-%d %H:%M:%S"), **info}
            (folder / (DONE + ".part")).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
            os.replace(folder / (DONE + ".part"), folder / DONE)
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the finished model replaces them
        self.barrier()


def _say(main: bool, message: str) -> None:
    if main:
        print(message, flush=True)


# ---------------------------------------------------------------- data

def _data_fingerprint(manifest_dir: Path) -> str:
    from trainer.manifest import MANIFEST, SPLITS

    digest = hashlib.sha256()
    for name in (MANIFEST, SPLITS):
        digest.update((manifest_dir / name).read_bytes())
    return digest.hexdigest()


def _load_samples(records, need_audio: bool, main: bool) -> dict[str, Any]:
    """wav_id -> Sample; audio decoded (16 kHz float32) only when a selected model needs it."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from core.audio import decode
    from core.models import Sample

    def one(record):
        audio = None
        if need_audio:
            try:
                audio = decode(record.audio)
            except Exception as exc:  # AudioError, or an OSError from the cache folder
                raise UserError(f"cannot read {record.audio} ({type(exc).__name__}: {exc}); run `trainer prepare` again") from None
        return Sample(text=record.text, audio=audio, id=record.wav_id)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        samples = list(tqdm(pool.map(one, records), total=len(records), desc="loading audio" if need_audio else "loading",
                            unit="clip", disable=not main or None))
    return {s.id: s for s in samples}


def _check_splits(records, splits) -> None:
    known = {r.wav_id for r in records}
    for part in ("train", "val", "test"):
        missing = [i for i in getattr(splits, part) if i not in known]
        if missing:
            raise UserError(f"splits.json names {len(missing)} {part} ids not in manifest.jsonl (e.g. {missing[0]}); run `trainer prepare` again")
    labels = {r.wav_id: r.label for r in records}
    absent = [label for label in LABELS if label not in {labels[i] for i in splits.train}]
    if absent:
        raise UserError(f"the train split has no {', '.join(absent)} utterances; every label needs examples")
    train = set(splits.train)
    if sorted(i for fold in splits.folds for i in fold) != sorted(train):
        raise UserError("splits.json's folds do not partition its train split; run `trainer prepare` again")


# ---------------------------------------------------------------- the command

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings file (default: built-in defaults; see config.toml)")
    parser.add_argument("--manifest", help="folder written by `trainer prepare` (overrides train.manifest)")
    parser.add_argument("--out", help="output folder (overrides train.out)")
    parser.add_argument("--models", help="comma-separated model names, or 'all' (overrides train.models); known: "
                        + ", ".join(MODELS))
    parser.add_argument("--fresh", action="store_true", help="ignore finished parts of an earlier run and start over")


def _select(cfg: Any) -> tuple[list[str], bool]:
    names = [n.strip() for n in cfg.models if n.strip()]
    if not names:
        raise UserError("no models to train: set train.models or --models (e.g. 'all')")
    unknown = [n for n in names if n != "all" and n not in MODELS]
    if unknown:
        raise UserError(f"unknown model {unknown[0]!r}; known: all, {', '.join(MODELS)}")
    if "all" in names:
        return list(MODELS), True
    return list(dict.fromkeys(names)), False


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from accelerate import PartialState

    from core.bundle import load_bundle, save_bundle
    from core.models import model_class
    from core.stacker import Stacker
    from trainer.evaluate import calibrate, evaluate_model, write_reports
    from trainer.manifest import read_manifest, read_splits
    from trainer.stacking import fit_stacker, validate

    models_arg = [m for m in args.models.split(",")] if args.models else None
    config = override(load_config(args.config), {"train.manifest": args.manifest, "train.out": args.out, "train.models": models_arg})
    cfg = config.train
    if not cfg.manifest:
        raise UserError("no prepared data: pass --manifest DIR (the --out folder of `trainer prepare`) or set train.manifest")
    manifest_dir, out = Path(cfg.manifest), Path(cfg.out)
    state = PartialState()
    main = state.is_main_process
    records = read_manifest(manifest_dir)
    splits = read_splits(manifest_dir)
    _check_splits(records, splits)
    names, everything = _select(cfg)

    if args.fresh and main and (out / WORK).exists():
        shutil.rmtree(out / WORK)
    state.wait_for_everyone()
    run_state = Run(out, _data_fingerprint(manifest_dir), main, state.wait_for_everyone)

    skipped: dict[str, str] = {}
    chosen_names = []
    for name in names:
        reason = unavailable_reason(name) or MODELS[name].build(cfg, run_state.part(name, "full")).unavailable_reason()
        if reason and not everything:
            raise UserError(f"cannot train {name}: {reason}")
        if reason:
            skipped[name] = reason
            _say(main, f"skipping {name}: {reason}")
        else:
            chosen_names.append(name)
    if not chosen_names:
        raise UserError("none of the models can be trained here: " + "; ".join(f"{n}: {r}" for n, r in skipped.items()))

    need_audio = any(MODELS[n].role in ("audio", "multimodal") for n in chosen_names)
    samples = _load_samples(records, need_audio, main)
    labels = {r.wav_id: r.label for r in records}

    def part_data(ids: Sequence[str]):
        return [samples[i] for i in ids], [labels[i] for i in ids]

    train, val, test = part_data(splits.train), part_data(splits.val), part_data(splits.test)
    _say(main, f"data: {len(train[0])} train, {len(val[0])} validation, {len(test[0])} test utterances; "
               f"models: {', '.join(chosen_names)}")

    # 1. every model on the full train split
    probabilities: dict[str, dict[str, np.ndarray]] = {}
    for number, name in enumerate(chosen_names, 1):
        folder = run_state.part(name, "full")
        fingerprint = run_state.fingerprint(name, "full", cfg)
        if run_state.is_done(folder, fingerprint):
            _say(main, f"[{number}/{len(chosen_names)}] {name}: done earlier, read back from {folder}")
        else:
            _say(main, f"[{number}/{len(chosen_names)}] {name}: training on {len(train[0])} utterances")
            run_state.start(folder, fingerprint)
            began = time.time()
            model = MODELS[name].build(cfg, folder).fit(*train, eval_set=val)
            arrays = {"val": model.predict_proba(val[0]), "test": model.predict_proba(test[0])}
            run_state.finish(folder, fingerprint, arrays, model, seconds=round(time.time() - began, 1))
            _say(main, f"    {name}: {time.time() - began:.0f} s")
        probabilities[name] = {key: np.load(folder / f"{key}.npy") for key in ("val", "test")}

    # 2. the best model of each role on validation
    reports = {name: evaluate_model(name, MODELS[name].role, MODELS[name].kind, val[1], p["val"], test[1], p["test"])
               for name, p in probabilities.items()}
    by_role: dict[str, str] = {}
    for name in chosen_names:
        role = MODELS[name].role
        if role not in by_role or reports[name].val["macro_f1"] > reports[by_role[role]].val["macro_f1"]:
            by_role[role] = name
    _say(main, "chosen per role (validation macro-F1): " + ", ".join(
        f"{role} = {name} ({reports[name].val['macro_f1']:.3f})" for role, name in by_role.items()))

    # 3. out-of-fold probabilities of the chosen models, 4. the stacker
    per_role_val = {role: probabilities[name]["val"] for role, name in by_role.items()}
    per_role_test = {role: probabilities[name]["test"] for role, name in by_role.items()}
    if len(by_role) == 1:
        (role,) = by_role
        stacker = Stacker.pass_through(role, "only one base model")
    else:
        oof = {role: np.full((len(splits.train), len(LABELS)), np.nan) for role in by_role}
        position = {wav_id: i for i, wav_id in enumerate(splits.train)}
        for role, name in by_role.items():
            for k, fold in enumerate(splits.folds):
                folder = run_state.part(name, f"fold{k}")
                fingerprint = run_state.fingerprint(name, f"fold{k}", cfg)
                held_out = set(fold)
                rows = [position[i] for i in fold]
                if run_state.is_done(folder, fingerprint):
                    _say(main, f"{name} fold {k + 1}/{len(splits.folds)}: done earlier")
                else:
                    _say(main, f"{name} fold {k + 1}/{len(splits.folds)}: training on {len(splits.train) - len(fold)}, predicting {len(fold)}")
                    run_state.start(folder, fingerprint)
                    model = MODELS[name].build(cfg, folder).fit(*part_data([i for i in splits.train if i not in held_out]), eval_set=val)
                    run_state.finish(folder, fingerprint, {"oof": model.predict_proba(part_data(fold)[0])})
                oof[role][rows] = np.load(folder / "oof.npy")
        stacker = fit_stacker(oof, part_data(splits.train)[1], seed=cfg.seed)
        validate(stacker, per_role_val, val[1])
    calibration = calibrate(val[1], stacker.predict_proba_from(per_role_val))
    stacker.temperature = calibration.used_temperature
    stacker.decision["calibration"] = calibration.to_json()
    _say(main, f"stacker: {stacker.decision['summary']}")
    stack_val, stack_test = stacker.predict_proba_from(per_role_val), stacker.predict_proba_from(per_role_test)
    probabilities["stack"] = {"val": stack_val, "test": stack_test}
    stack_report = evaluate_model("stack", "stacking", "stacker", val[1], stack_val, test[1], stack_test)
    stack_report.notes.append(stacker.decision["summary"])

    # 5. reports and the bundle
    if main:
        from trainer.prepare import SPEAKER_NOTE

        all_reports = [reports[n] for n in chosen_names] + [stack_report]
        extra = {"chosen": by_role, "splits": {k: len(getattr(splits, k)) for k in ("train", "val", "test")},
                 "folds": len(splits.folds)}
        write_reports(out, all_reports, probabilities, val[1], test[1], stacker.decision, skipped, [SPEAKER_NOTE], extra)
        bundle_models = {role: model_class(MODELS[name].kind).load(run_state.part(name, "full") / "model", device="cpu")
                         for role, name in by_role.items()}
        summary = {name: {"val_macro_f1": round(r.val["macro_f1"], 4), "test_accuracy": round(r.test["accuracy"], 4),
                          "test_macro_f1": round(r.test["macro_f1"], 4), "test_weighted_f1": round(r.test["weighted_f1"], 4)}
                   for name, r in [*reports.items(), ("stack", stack_report)]}
        bundle = save_bundle(out / "bundle", bundle_models, stacker, features={"sample_rate": 16_000},
                             metrics={"models": summary, "chosen": by_role, "stacking": stacker.decision},
                             notes=SPEAKER_NOTE)
        _check_bundle(bundle, test[0][:16], stack_test[:16], load_bundle)
        print((out / "summary.md").read_text(encoding="utf-8"))
        print(f"wrote {out / 'metrics.json'}, {out / 'summary.md'}, {out / 'plots'}/ and the bundle {bundle}")
    state.wait_for_everyone()
    return 0


def _check_bundle(folder: Path, samples, expected, load_bundle) -> None:
    """Load the written bundle and predict a few test utterances: it must reproduce the run's numbers."""
    import numpy as np

    predictions = load_bundle(folder).predict(samples)
    got = np.array([[p.probs[label] for label in LABELS] for p in predictions])
    if not np.allclose(got, expected, atol=1e-4):
        raise RuntimeError(f"the bundle in {folder} predicts differently from the models it was built from "
                           f"(largest difference {np.abs(got - expected).max():.2e}): a save/load bug")
