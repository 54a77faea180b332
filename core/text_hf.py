"""`text_hf`: a fine-tuned Hugging Face encoder (KLUE-RoBERTa, KoELECTRA, KoBERT, ...) for the four
emotions, and the tokenizer loading every Hugging Face text encoder of the project goes through.

Fine-tuning is trainer/fit_text_hf.py (transformers' Trainer); this module loads the result and
predicts, so the daemon never imports the Trainer.

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
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from core.device import pick_device
from core.errors import UserError
from core.hub import hub_file
from core.labels import LABELS
from core.models import Sample, sample_texts

DEFAULT_MODEL = "klue/roberta-base"
TOKENIZER_KINDS: tuple[str, ...] = ("auto", "hf", "sentencepiece-bert")
SPM_FILES: tuple[str, ...] = ("spiece.model", "tokenizer_78b3253a26.model")  # KoBERT's, in both layouts
SETTINGS_FILE = "text_hf.json"
MODEL_DIR = "model"


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
    config = hub_file(source, "tokenizer_config.json")
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
            path = hub_file(source, name)
            if path is not None:
                return sentencepiece_bert_tokenizer(path)
        raise UserError(f"{source} has none of {', '.join(SPM_FILES)}: the sentencepiece-bert tokenizer needs KoBERT's SentencePiece model")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise UserError(f"the tokenizer of {source!r} could not be loaded ({str(exc).splitlines()[0]}); "
                        "pass a local model folder or a hub name reachable from this machine") from None


class HFTextClassifier:
    """A Hugging Face encoder with a classification head, fine-tuned end to end (trainer/fit_text_hf.py)."""

    kind: ClassVar[str] = "text_hf"
    labels: tuple[str, ...] = LABELS

    def __init__(self, model: Any, tokenizer: Any, source: str = DEFAULT_MODEL, tokenizer_kind: str = "auto",
                 max_length: int = 128, eval_batch_size: int = 64, device: str = "auto",
                 record: dict[str, Any] | None = None):
        if tokenizer_kind not in TOKENIZER_KINDS:
            raise UserError(f"tokenizer {tokenizer_kind!r} is not one of {', '.join(TOKENIZER_KINDS)}")
        self.model, self.tokenizer = model, tokenizer
        self.source, self.tokenizer_kind = source, tokenizer_kind
        self.max_length, self.eval_batch_size, self.device = max_length, eval_batch_size, device
        self.record = record or {}  # how it was fine-tuned (settings, best epoch), kept in its settings file

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        import torch

        texts = sample_texts(samples, "the text model")
        device = pick_device(self.device)
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
        folder = Path(folder)
        self.model.save_pretrained(folder / MODEL_DIR)  # safetensors
        self.tokenizer.save_pretrained(folder / MODEL_DIR)
        settings = {
            "labels": list(LABELS),
            "source": self.source,
            "tokenizer": self.tokenizer_kind,
            "max_length": self.max_length,
            "eval_batch_size": self.eval_batch_size,
            **self.record,
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
            tokenizer = AutoTokenizer.from_pretrained(folder / MODEL_DIR)
            network = AutoModelForSequenceClassification.from_pretrained(folder / MODEL_DIR).eval()
            record = {k: v for k, v in settings.items() if k not in ("labels", "source", "tokenizer", "max_length", "eval_batch_size")}
            model = cls(network, tokenizer, settings["source"], settings["tokenizer"], max_length=int(settings["max_length"]),
                        eval_batch_size=int(settings["eval_batch_size"]), device=device, record=record)
        except FileNotFoundError as exc:
            raise UserError(f"text model file {exc.filename or path} is missing; copy the bundle again or retrain") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(f"text model in {folder} is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0]}); retrain it") from None
        id2label = [network.config.id2label[i] for i in range(network.config.num_labels)]
        if tuple(settings.get("labels", ())) != LABELS or tuple(id2label) != LABELS:
            raise UserError(f"{folder}: the text model's labels {id2label} differ from {list(LABELS)}; retrain it")
        network.to(pick_device(device))
        return model
