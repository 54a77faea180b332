"""Fine-tuning a Hugging Face encoder (KLUE-RoBERTa, KoELECTRA, KoBERT, ...) into a `text_hf` model.

transformers' Trainer does the work, so the same code runs on a CPU, on one GPU in bf16/fp16, and
on several GPUs when started with `torchrun` or `accelerate launch`. The seed's settings are the
defaults (batch 16, learning rate 2e-5); on top of them: dynamic padding (DataCollatorWithPadding),
evaluation every epoch with early stopping on validation macro-F1 (the best epoch's weights are
kept), and checkpoints every epoch so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from core.device import PRECISIONS, pick_device, resolve_precision
from core.errors import UserError
from core.hub import unavailable_reason
from core.labels import LABELS, label_indices
from core.models import Sample, sample_texts
from core.text_hf import (
    DEFAULT_MODEL,
    TOKENIZER_KINDS,
    HFTextClassifier,
    load_tokenizer,
)
from trainer.evaluate import macro_f1

log = logging.getLogger(__name__)

HOLDOUT = 0.1  # share of train kept for early stopping when no validation set is given


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


def _metrics(eval_prediction) -> dict[str, float]:
    logits, labels = eval_prediction
    logits = np.asarray(logits)
    accuracy = float((logits.argmax(axis=-1) == np.asarray(labels)).mean()) if len(logits) else 0.0
    return {"macro_f1": macro_f1(labels, logits), "accuracy": accuracy}


class TextHFFitter:
    """Fine-tunes `model` (hub name or local folder) with the settings of [train.text_hf]."""

    kind: ClassVar[str] = "text_hf"

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
        self.resumed_from: str | None = None  # the checkpoint the last fit() continued from

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self.source)

    def _training_arguments(self, output_dir: Path):
        from transformers import TrainingArguments

        device = pick_device(self.device)
        precision = resolve_precision(self.precision, device.type)
        return TrainingArguments(
            output_dir=str(output_dir),
            per_device_train_batch_size=self.batch_size,
            per_device_eval_batch_size=self.eval_batch_size,
            learning_rate=self.learning_rate,
            num_train_epochs=self.epochs,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_ratio,  # transformers >= 5: a float below 1 is a share of all steps
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

    def _build_trainer(self, model, tokenizer, args, train_set, eval_set):
        """The Trainer for one fit (a separate method so callers can add callbacks)."""
        from transformers import DataCollatorWithPadding, EarlyStoppingCallback, Trainer

        return Trainer(
            model=model,
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=_metrics,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=self.patience)],
        )

    def fit(
        self,
        samples: Sequence[Sample],
        y: Sequence[str],
        eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None,
    ) -> HFTextClassifier:
        """Fine-tune on (samples, y), early-stopping on `eval_set` (or a stratified 10 % of train).

        Checkpoints go to `checkpoint_dir` (a fit there resumes from the last one) or a temporary
        folder; under torchrun every process must see the same folder, so set checkpoint_dir there
        (`trainer train` always does).
        """
        from sklearn.model_selection import train_test_split
        from transformers import AutoModelForSequenceClassification, set_seed
        from transformers.trainer_utils import get_last_checkpoint

        texts, target = sample_texts(samples, "the text model"), label_indices(y)
        if eval_set is None:
            texts, val_texts, target, val_target = train_test_split(
                texts, target, test_size=HOLDOUT, stratify=target, random_state=self.seed
            )
        else:
            val_texts, val_target = sample_texts(eval_set[0], "the text model"), label_indices(eval_set[1])
        reason = self.unavailable_reason()
        if reason:
            raise UserError(f"text model {self.source!r} cannot be loaded: {reason}")
        set_seed(self.seed)
        tokenizer = load_tokenizer(self.source, self.tokenizer_kind)
        try:
            network = AutoModelForSequenceClassification.from_pretrained(
                self.source,
                num_labels=len(LABELS),
                id2label=dict(enumerate(LABELS)),
                label2id={label: i for i, label in enumerate(LABELS)},
            )
        except (OSError, ValueError) as exc:
            raise UserError(f"the model {self.source!r} could not be loaded ({str(exc).splitlines()[0]})") from None
        train_set = _Encoded(tokenizer, texts, target, self.max_length)
        val_set = _Encoded(tokenizer, val_texts, val_target, self.max_length)

        scratch = None
        output_dir = self.checkpoint_dir
        if output_dir is None:
            scratch = tempfile.mkdtemp(prefix="text_hf-")
            output_dir = Path(scratch)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            trainer = self._build_trainer(network, tokenizer, self._training_arguments(output_dir), train_set, val_set)
            self.resumed_from = get_last_checkpoint(str(output_dir))
            if self.resumed_from:
                log.info("resuming %s from %s", self.source, self.resumed_from)
            trainer.train(resume_from_checkpoint=self.resumed_from)
            best = {k: v for k, v in (trainer.evaluate() or {}).items() if k in ("eval_macro_f1", "eval_accuracy", "epoch")}
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)
        record = {"best": best, "training": {"batch_size": self.batch_size, "learning_rate": self.learning_rate,
                                             "epochs": self.epochs, "patience": self.patience,
                                             "weight_decay": self.weight_decay, "warmup_ratio": self.warmup_ratio,
                                             "precision": self.precision, "seed": self.seed}}
        return HFTextClassifier(trainer.model.float().eval(), tokenizer, self.source, self.tokenizer_kind,
                                self.max_length, self.eval_batch_size, self.device, record)
