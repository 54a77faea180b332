"""The written corpus the default head learns from, and the held-out sentences it is judged on.

A lopsided corpus teaches the head a prior instead of emotions; a duplicated sentence counts twice
and leaks across CV folds; a held-out sentence that is also in the corpus measures memory.
"""
from collections import Counter
from pathlib import Path

import pytest

from core.labels import LABELS
from trainer.default_head import CORPUS, HELDOUT, normalise, read_sentences

MIN_PER_LABEL = 200
MAX_IMBALANCE = 1.10  # no label more than 10% above another


@pytest.fixture(scope="module")
def corpus():
    return read_sentences(CORPUS)


@pytest.fixture(scope="module")
def heldout():
    return read_sentences(HELDOUT)


def test_corpus_header_is_the_documented_one():
    assert CORPUS.read_text(encoding="utf-8").splitlines()[0].split("\t") == ["label", "text", "topic", "register"]


def test_corpus_is_balanced(corpus):
    counts = Counter(s.label for s in corpus)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) >= MIN_PER_LABEL, counts
    assert max(counts.values()) <= MAX_IMBALANCE * min(counts.values()), counts


@pytest.mark.parametrize("which", ["corpus", "heldout"])
def test_no_duplicates_exact_or_after_normalising(which, request):
    sentences = request.getfixturevalue(which)
    exact = [t for t, n in Counter(s.text for s in sentences).items() if n > 1]
    assert not exact, f"exact duplicates: {exact[:5]}"
    seen: dict[str, int] = {}
    clashes = []
    for s in sentences:
        key = normalise(s.text)
        if key in seen:
            clashes.append((seen[key], s.line, s.text))
        seen[key] = s.line
    assert not clashes, f"duplicates once spaces and punctuation are ignored (line, line, text): {clashes[:5]}"


def test_heldout_shares_no_sentence_with_the_corpus(corpus, heldout):
    keys = {normalise(s.text): s.line for s in corpus}
    shared = [(s.line, keys[normalise(s.text)], s.text) for s in heldout if normalise(s.text) in keys]
    assert not shared, f"held-out line, corpus line, text: {shared[:5]}"


def test_heldout_covers_every_label(heldout):
    counts = Counter(s.label for s in heldout)
    assert set(counts) == set(LABELS) and min(counts.values()) >= 30, counts


def test_normalise_ignores_spaces_punctuation_and_case():
    assert normalise("정말 화가 나!") == normalise("정말화가나.") == normalise(" 정말  화가 나 ")
    assert normalise("OK 좋아요") == normalise("ok, 좋아요")
    assert normalise("화가 나") != normalise("화가 안 나")


def test_reader_names_file_and_line_of_a_bad_row(tmp_path: Path):
    from core.errors import UserError

    path = tmp_path / "c.tsv"
    path.write_text("label\ttext\ttopic\tregister\nangry\t화나\tx\ty\nsurprise\t깜짝이야\tx\ty\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{path}:3: label 'surprise'"):
        read_sentences(path)
    path.write_text("emotion\tsentence\n", encoding="utf-8")
    with pytest.raises(UserError, match="no label, text column"):
        read_sentences(path)
