"""Fine-tuning a Hugging Face encoder, on a tiny random BERT whose tokenizer is trained here (no download)."""
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import split_samples

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from transformers import TrainerCallback  # noqa: E402

from core.bundle import load_bundle, save_bundle  # noqa: E402
from core.device import resolve_precision  # noqa: E402
from core.errors import UserError  # noqa: E402
from core.hub import unavailable_reason  # noqa: E402
from core.labels import LABELS  # noqa: E402
from core.text_hf import load_tokenizer, sentencepiece_bert_tokenizer  # noqa: E402
from testsupport.tiny_models import tiny_bert  # noqa: E402
from trainer.evaluate import classification_metrics  # noqa: E402
from trainer.fit_text_hf import TextHFFitter  # noqa: E402


@pytest.fixture(scope="module")
def data(prepared_fixture):
    return split_samples(prepared_fixture, audio=False)


def fitter(model_dir: Path, **overrides) -> TextHFFitter:
    settings = dict(batch_size=16, learning_rate=3e-3, epochs=8, patience=3, max_length=64, device="cpu", seed=13)
    return TextHFFitter(str(model_dir), **{**settings, **overrides})


def train_spm(folder: Path, texts: list[str]) -> Path:
    """A SentencePiece model laid out like KoBERT's: [UNK] [PAD] [CLS] [SEP] [MASK] as ids 0-4."""
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts * 3), model_writer=buffer, vocab_size=150, model_type="unigram",
        unk_id=0, unk_piece="[UNK]", pad_id=1, pad_piece="[PAD]", bos_id=2, bos_piece="[CLS]",
        eos_id=3, eos_piece="[SEP]", user_defined_symbols=["[MASK]"], character_coverage=1.0, minloglevel=2,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(buffer.getvalue())
    return folder / "spiece.model"


def test_kobert_style_tokenizer_gives_sentencepiece_ids_in_bert_template(data, tmp_path):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    texts = [s.text for s in data["train"][0]]
    model_file = train_spm(tmp_path / "kobert-tiny", texts)
    reference = spm.SentencePieceProcessor(model_file=str(model_file))
    tokenizer = sentencepiece_bert_tokenizer(model_file)
    identical = 0
    for text in texts + ["  띄어쓰기가   많은  문장 ", "가격은 12,000원이야"]:
        ids = tokenizer(text)["input_ids"]
        expected = reference.encode(text)
        assert ids[0] == 2 and ids[-1] == 3, text
        ours = ids[1:-1]
        identical += ours == expected
        # where two segmentations score the same ("..", "." vs ".", ".."), the libraries may break the tie differently
        assert reference.decode(ours) == reference.decode(expected), text
        assert sum(map(reference.get_score, ours)) == pytest.approx(sum(map(reference.get_score, expected))), text
    assert identical >= 0.95 * (len(texts) + 2)
    batch = tokenizer(texts[:4], padding=True)
    longest = max(len(ids) for ids in batch["input_ids"])
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        kept = sum(mask)
        assert ids[0] == 2 and ids[kept - 1] == 3 and ids[kept:] == [1] * (longest - kept)  # pads on the right
    tokenizer.save_pretrained(tmp_path / "saved")
    assert AutoTokenizer.from_pretrained(tmp_path / "saved")(texts[:4], padding=True)["input_ids"] == batch["input_ids"]
    # "auto" recognises KoBERT by name, or by the tokenizer class its tokenizer_config.json names
    assert load_tokenizer(str(tmp_path / "kobert-tiny"))(texts[0])["input_ids"] == batch["input_ids"][0][: sum(batch["attention_mask"][0])]
    plain = tmp_path / "renamed"
    plain.mkdir()
    (plain / "spiece.model").write_bytes(model_file.read_bytes())
    (plain / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "KoBERTTokenizer"}))
    assert load_tokenizer(str(plain))(texts[1])["input_ids"] == tokenizer(texts[1])["input_ids"]


def test_sentencepiece_model_without_bert_pieces_is_refused(data, tmp_path):
    import sentencepiece as spm

    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter([s.text for s in data["train"][0]] * 3), model_writer=buffer,
                                   vocab_size=150, minloglevel=2)
    (tmp_path / "spiece.model").write_bytes(buffer.getvalue())
    with pytest.raises(UserError, match=r"no \[UNK\], \[PAD\], \[CLS\], \[SEP\] piece"):
        sentencepiece_bert_tokenizer(tmp_path / "spiece.model")
    with pytest.raises(UserError, match="none of spiece.model"):
        load_tokenizer(str(tmp_path / "nothing-here"), "sentencepiece-bert")


def test_unavailable_models_say_why(tmp_path):
    assert "does not exist" in unavailable_reason(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    assert "no config.json" in unavailable_reason(str(tmp_path / "empty"))
    assert "Hugging Face hub" in unavailable_reason("no-such-owner-e2/no-such-model")


def test_precision_follows_the_device():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(UserError, match="fp16' needs a CUDA GPU"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(UserError, match="precision 'half'"):
        TextHFFitter(precision="half")


@pytest.mark.slow
def test_fine_tunes_above_chance_and_round_trips_through_a_bundle(data, tmp_path):
    texts = [s.text for s in data["train"][0] + data["val"][0]]
    tuner = fitter(tiny_bert(tmp_path / "tiny", texts))
    model = tuner.fit(*data["train"], eval_set=data["val"])
    assert tuner.resumed_from is None and model.record["best"]["eval_macro_f1"] > 0.4
    test_samples, test_labels = data["test"]
    proba = model.predict_proba(test_samples)
    assert proba.shape == (len(test_samples), len(LABELS)) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    metrics = classification_metrics(test_labels, proba)
    assert metrics["accuracy"] > 0.45, metrics  # chance is 0.25

    folder = save_bundle(tmp_path / "bundle", {"text": model})
    assert (folder / "text" / "model" / "model.safetensors").is_file()
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    predictions = load_bundle(folder).predict(test_samples)
    loaded = np.array([[p.probs[label] for label in LABELS] for p in predictions])
    np.testing.assert_allclose(loaded, proba, atol=1e-5)


class InterruptAfterEpoch2(TrainerCallback):
    """Stops the process the way Ctrl-C does, once epoch 2's checkpoint is written."""

    def on_save(self, args, state, control, **kwargs):
        if state.epoch >= 2:
            raise KeyboardInterrupt


class InterruptedFitter(TextHFFitter):
    def _build_trainer(self, model, tokenizer, args, train_set, eval_set):
        trainer = super()._build_trainer(model, tokenizer, args, train_set, eval_set)
        trainer.add_callback(InterruptAfterEpoch2())
        return trainer


@pytest.mark.slow
def test_interrupted_fine_tuning_resumes_from_its_checkpoint(data, tmp_path):
    tiny = tiny_bert(tmp_path / "tiny", [s.text for s in data["train"][0]])
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(KeyboardInterrupt):
        InterruptedFitter(str(tiny), **dict(batch_size=16, learning_rate=3e-3, epochs=6, patience=6, max_length=64,
                                                device="cpu", checkpoint_dir=checkpoints)).fit(*data["train"], eval_set=data["val"])
    saved = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert saved, "an epoch's checkpoint should be on disk after the interruption"
    tuner = fitter(tiny, epochs=6, patience=6, checkpoint_dir=checkpoints)
    resumed = tuner.fit(*data["train"], eval_set=data["val"])
    assert tuner.resumed_from == str(saved[-1])
    last = max(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    assert state["epoch"] == 6  # it went on to the end instead of starting again
    assert classification_metrics(data["test"][1], resumed.predict_proba(data["test"][0]))["accuracy"] > 0.45
