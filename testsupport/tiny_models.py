"""Tiny, randomly initialised Hugging Face models saved like downloaded checkpoints, with tokenizers
trained on the fly: the real loading code runs on them without any hub (these machines reach none).
"""
from __future__ import annotations

from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert(folder: Path, texts: list[str], *, hidden: int = 64, layers: int = 1, normalize: bool = True) -> Path:
    """A BERT encoder of `layers` layers and a WordPiece tokenizer trained on `texts`, in `folder`.

    `normalize=False` leaves out the tokenizer's NFC step, so only the project's own text
    cleaning stands between decomposed jamo and the vocabulary (the model contract test uses it).
    """
    import torch
    from tokenizers import (
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    if normalize:
        backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=300, special_tokens=SPECIALS))
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[(s, backend.token_to_id(s)) for s in ("[CLS]", "[SEP]")]
    )
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    config = BertConfig(vocab_size=backend.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=4 if hidden % 4 == 0 else 2, intermediate_size=2 * hidden,
                        max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def tiny_wav2vec2(folder: Path, base_size: bool = False) -> Path:
    """A two-layer wav2vec 2.0 (or one of wav2vec2-base's shape, for GPU benches) with its feature
    extractor, in `folder`."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForSequenceClassification,
    )

    torch.manual_seed(0)
    if base_size:
        config = Wav2Vec2Config()  # wav2vec2-base: 768 wide, 12 layers, 512-channel CNN front end
    else:
        config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                classifier_proj_size=16, vocab_size=8)
    Wav2Vec2ForSequenceClassification(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor().save_pretrained(folder)
    return folder
