"""Fine-tune any Hugging Face encoder (KLUE-RoBERTa, KoELECTRA, KoBERT, ...) for the four emotions.

transformers' Trainer does the work, so the same code runs on a CPU, on one GPU in bf16/fp16, and
on several GPUs when started with `torchrun` or `accelerate launch`. The seed's settings are the
defaults (batch 16, learning rate 2e-5); on top of them: dynamic padding (DataCollatorWithPadding),
evaluation every epoch with early stopping on validation macro-F1 (the best epoch's weights are
kept), and checkpoints every epoch so an interrupted run resumes where it stopped.

KoBERT (`skt/kobert-base-v1`) ships no tokenizer that transformers can build by itself: its
tokenizer is the `kobert_tokenizer` package's KoBERTTokenizer, installable only from git. That
class is an XLNetTokenizer over the repository's SentencePiece model with BERT's template
(`[CLS] text [SEP]`, padding on the right, token type 0), ids being the SentencePiece ids. The
"sentencepiece-bert" loader below builds exactly that as a fast tokenizer from the .model file, so
the fine-tuned model saves a plain tokenizer.json that AutoTokenizer loads anywhere. Two details of
the original are not reproduced: accent stripping (NFKD, drop combining marks) and the re-split of
a piece that ends in a digit and a comma ("▁1,"); neither touches Hangul.

Weights are saved with save_pretrained (safetensors); bundles never hold pickles.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from trainer.bundle import Sample
from trainer.errors import UserError
from trainer.labels import LABELS

log = logging.getLogger(__name__)

DEFAULT_MODEL = "klue/roberta-base"
TOKENIZER_KINDS: tuple[str, ...] = ("auto", "hf", "sentencepiece-bert")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
SPM_FILES: tuple[str, ...] = ("spiece.model", "tokenizer_78b3253a26.model")  # KoBERT's, in both layouts
SETTINGS_FILE = "text_hf.json"
MODEL_DIR = "model"
HOLDOUT = 0.1  # share of train kept for early stopping when no validation set is given


def resolve_precision(precision: str, cuda: bool) -> str:
    """"auto" = bf16 on a GPU that has it, else fp16 on CUDA, fp32 on CPU; fp16 without CUDA is an error."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if not cuda:
            return "fp32"
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and not cuda:
        raise UserError("precision 'fp16' needs a CUDA GPU; use 'auto', 'fp32' or 'bf16' on a CPU")
    return precision


def _hub_file(source: str, filename: str) -> Path | None:
    """A file of a local folder or a hub repository (downloaded or cached), or None if it has none."""
    local = Path(source)
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(source, filename, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    return Path(found) if found else None


def sentencepiece_bert_tokenizer(spm_path: str | Path):
    """A fast tokenizer over a SentencePiece model with BERT's special-token template (KoBERT's tokenizer)."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SentencePieceExtractor, SpmConverter

    proto = SentencePieceExtractor(str(spm_path)).proto
    pieces = {p.piece: i for i, p in enumerate(proto.pieces)}
    missing = [t for t in ("[UNK]", "[PAD]", "[CLS]", "[SEP]") if t not in pieces]
    if missing:
        raise UserError(f"{spm_path} has no {', '.join(missing)} piece: not a KoBERT-style SentencePiece model; "
                        "set [train.text_hf] tokenizer = \"hf\" if the model ships its own tokenizer")
    if proto.trainer_spec.model_type == 1:  # unigram
        vocab: Any = [(p.piece, p.score) for p in proto.pieces]
    else:
        vocab = pieces
    backend = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab)
    if backend is None:
        raise UserError(f"{spm_path}: SentencePiece model type {proto.trainer_spec.model_type} is not supported")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", pieces["[CLS]"]), ("[SEP]", pieces["[SEP]"])],
    )
    specials = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
    if "[MASK]" in pieces:
        specials["mask_token"] = "[MASK]"
    return PreTrainedTokenizerFast(tokenizer_object=backend, padding_side="right", **specials)


def _is_kobert(source: str) -> bool:
    if "kobert" in source.lower():
        return True
    config = _hub_file(source, "tokenizer_config.json")
    if config is None:
        return False
    try:
        tokenizer_class = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") or ""
    except ValueError:
        return False
    return tokenizer_class.lower() == "koberttokenizer"


def load_tokenizer(source: str, kind: str = "auto"):
    """The tokenizer of a hub name or local folder; "auto" picks sentencepiece-bert for KoBERT."""
    if kind not in TOKENIZER_KINDS:
        raise UserError(f"tokenizer {kind!r} is not one of {', '.join(TOKENIZER_KINDS)}")
    if kind == "auto":
        kind = "sentencepiece-bert" if _is_kobert(source) else "hf"
    if kind == "sentencepiece-bert":
        for name in SPM_FILES:
            path = _hub_file(source, name)
            if path is not None:
                return sentencepiece_bert_tokenizer(path)
        raise UserError(f"{source} has none of {', '.join(SPM_FILES)}: the sentencepiece-bert tokenizer needs KoBERT's SentencePiece model")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(f"the tokenizer of {source!r} could not be loaded ({str(exc).splitlines()[0]}); "
                        "pass a local model folder or a hub name reachable from this machine") from None


def unavailable_reason(source: str) -> str | None:
    """Why `source` cannot be fine-tuned here (None = it can): a local folder or a reachable/cached hub repo."""
    local = Path(source)
    if local.is_dir():
        return None if (local / "config.json").is_file() else f"{local} has no config.json: not a Hugging Face model folder"
    if local.is_absolute() or source.startswith((".", "~")):
        return f"{source} does not exist"
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return None
    try:
        get_hf_file_metadata(hf_hub_url(source, "config.json"), timeout=5)
    except Exception as exc:  # offline, unknown repo, gated: all mean "not here"
        return f"{source} is neither a local folder nor reachable on the Hugging Face hub ({type(exc).__name__}); " \
               "download it elsewhere and set its folder in the config"
    return None


def _texts(samples: Sequence[Sample]) -> list[str]:
    texts = []
    for sample in samples:
        if not (sample.text or "").strip():
            raise ValueError(f"sample {sample.id!r} has no text; the text model classifies text only")
        texts.append(sample.text.strip())
    return texts


class _Encoded:
    """Tokenised utterances with their labels, as the Trainer's data collator wants them."""

    def __init__(self, tokenizer, texts: list[str], labels: np.ndarray, max_length: int):
        self.rows = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.rows.items()}
        item["labels"] = int(self.labels[i])
        return item


def _macro_f1(eval_prediction) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    logits, labels = eval_prediction
    pred = np.asarray(logits).argmax(axis=-1)
    return {
        "macro_f1": float(f1_score(labels, pred, labels=list(range(len(LABELS))), average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, pred)),
    }


class HFTextClassifier:
    """A Hugging Face encoder with a classification head, fine-tuned end to end."""

    kind: ClassVar[str] = "text_hf"
    labels: tuple[str, ...] = LABELS

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        tokenizer: str = "auto",
        batch_size: int = 16,
        learning_rate: float = 2e-5,
        epochs: int = 5,
        patience: int = 2,
        max_length: int = 128,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        eval_batch_size: int = 64,
        precision: str = "auto",
        device: str = "auto",
        seed: int = 13,
        checkpoint_dir: str | Path | None = None,
    ):
        if tokenizer not in TOKENIZER_KINDS:
            raise UserError(f"tokenizer {tokenizer!r} is not one of {', '.join(TOKENIZER_KINDS)}")
        if precision not in PRECISIONS:
            raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.source = model
        self.tokenizer_kind = tokenizer
        self.batch_size, self.learning_rate, self.epochs = batch_size, learning_rate, epochs
        self.patience, self.max_length = patience, max_length
        self.weight_decay, self.warmup_ratio, self.eval_batch_size = weight_decay, warmup_ratio, eval_batch_size
        self.precision, self.device, self.seed = precision, device, seed
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.tokenizer = None
        self.model = None
        self.resumed_from: str | None = None  # the checkpoint the last fit() continued from
        self.best_epoch_metrics: dict[str, float] = {}

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self.source)

    def _torch_device(self):
        import torch

        if self.device == "auto":
            from accelerate import PartialState

            return PartialState().device  # this process's GPU under torchrun / accelerate, else cuda or cpu
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {self.device!r} was asked for but torch sees no CUDA GPU; use 'auto' or 'cpu'")
        return torch.device(self.device)

    def _training_arguments(self, output_dir: Path):
        from transformers import TrainingArguments

        device = self._torch_device()
        precision = resolve_precision(self.precision, device.type == "cuda")
        return TrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=self.eval_batch_size,
            learning_rate=self.learning_rate,
            num_train_epochs=self.epochs,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_ratio,  # a float below 1 is a share of all steps
            eval_strategy="epoch",
            save_strategy="epoch",
            logging_strategy="epoch",
            save_total_limit=2,  # the best and the latest epoch
            load_best_model_at_end=True,
            metric_for_best_model="macro_f1",
            greater_is_better=True,
            restore_callback_states_from_checkpoint=True,  # early stopping's patience survives a resume
            bf16=precision == "bf16",
            fp16=precision == "fp16",
            use_cpu=device.type == "cpu",
            seed=self.seed,
            report_to="none",
            dataloader_num_workers=0,
        )

    def _build_trainer(self, model, args, train_set, eval_set):
        """The Trainer for one fit (a separate method so callers can add callbacks)."""
        from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

        return Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=DataCollatorWithPadding(self.tokenizer),
            processing_class=self.tokenizer,
            compute_metrics=_macro_f1,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=self.patience)],
        )

    def fit(
        self,
        samples: Sequence[Sample],
        y: Sequence[str],
        eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None,
    ) -> "HFTextClassifier":
        """Fine-tune on (samples, y), early-stopping on `eval_set` (or a stratified 10 % of train).

        Checkpoints go to `checkpoint_dir` (a fit there resumes from the last one) or a temporary
        folder; under torchrun every process must see the same folder, so set checkpoint_dir there
        (`trainer train` always does).
        """
        from sklearn.model_selection import train_test_split
        from transformers import AutoModelForSequenceClassification, set_seed
        from transformers.trainer_utils import get_last_checkpoint

        from trainer.evaluate import label_indices

        texts, target = _texts(samples), label_indices(y)
        if eval_set is None:
            texts, val_texts, target, val_target = train_test_split(
                texts, target, test_size=HOLDOUT, stratify=target, random_state=self.seed
            )
        else:
            val_texts, val_target = _texts(eval_set[0]), label_indices(eval_set[1])
        reason = self.unavailable_reason()
        if reason:
            raise UserError(f"text model {self.source!r} cannot be loaded: {reason}")
        set_seed(self.seed)
        self.tokenizer = load_tokenizer(self.source, self.tokenizer_kind)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                self.source,
                num_labels=len(LABELS),
                id2label=dict(enumerate(LABELS)),
                label2id={label: i for i, label in enumerate(LABELS)},
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"the model {self.source!r} could not be loaded ({str(exc).splitlines()[0]})") from None
        train_set = _Encoded(self.tokenizer, texts, target, self.max_length)
        val_set = _Encoded(self.tokenizer, val_texts, val_target, self.max_length)

        scratch = None
        output_dir = self.checkpoint_dir
        if output_dir is None:
            scratch = tempfile.mkdtemp(prefix="text_hf-")
            output_dir = Path(scratch)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            trainer = self._build_trainer(model, self._training_arguments(output_dir), train_set, val_set)
            self.resumed_from = get_last_checkpoint(str(output_dir))
            if self.resumed_from:
                log.info("resuming %s from %s", self.source, self.resumed_from)
            trainer.train(resume_from_checkpoint=self.resumed_from)
            self.best_epoch_metrics = {
                k: v for k, v in (trainer.evaluate() or {}).items() if k in ("eval_macro_f1", "eval_accuracy", "epoch")
            }
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        self.model = trainer.model.float().eval()
        return self

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        import torch

        if self.model is None or self.tokenizer is None:
            raise RuntimeError("HFTextClassifier.predict_proba called before fit() or load()")
        texts = _texts(samples)
        device = self._torch_device()
        self.model.to(device)
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths batch with little padding
        with torch.inference_mode():
            for start in range(0, len(order), self.eval_batch_size):
                rows = order[start : start + self.eval_batch_size]
                batch = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(device)
                logits = self.model(**batch).logits.float()
                out[rows] = torch.softmax(logits, dim=-1).cpu().numpy()
        return out

    def save(self, folder: Path) -> dict[str, Any]:
        if self.model is None or self.tokenizer is None:
            raise RuntimeError("HFTextClassifier.save called before fit()")
        folder = Path(folder)
        self.model.save_pretrained(folder / MODEL_DIR)  # safetensors
        self.tokenizer.save_pretrained(folder / MODEL_DIR)
        settings = {
            "labels": list(LABELS),
            "source": self.source,
            "tokenizer": self.tokenizer_kind,
            "max_length": self.max_length,
            "eval_batch_size": self.eval_batch_size,
            "best": self.best_epoch_metrics,
        }
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return settings

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "HFTextClassifier":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder = Path(folder)
        path = folder / SETTINGS_FILE
        try:
            settings = json.loads(path.read_text(encoding="utf-8"))
            model = cls(settings["source"], settings["tokenizer"], max_length=int(settings["max_length"]),
                        eval_batch_size=int(settings["eval_batch_size"]), device=device)
            model.tokenizer = AutoTokenizer.from_pretrained(folder / MODEL_DIR)
            model.model = AutoModelForSequenceClassification.from_pretrained(folder / MODEL_DIR).eval()
        except FileNotFoundError as exc:
            raise UserError(f"text model file {exc.filename or path} is missing; copy the bundle again or retrain") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"text model in {folder} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]}); retrain it") from None
        id2label = [model.model.config.id2label[i] for i in range(model.model.config.num_labels)]
        if tuple(settings.get("labels", ())) != LABELS or tuple(id2label) != LABELS:
            raise UserError(f"{folder}: the text model's labels {id2label} differ from {list(LABELS)}; retrain it")
        model.best_epoch_metrics = settings.get("best", {})
        model.model.to(model._torch_device())
        return model
