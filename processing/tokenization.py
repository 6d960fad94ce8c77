"""Tokenizer handling: the visual placeholder token.

VLMixer marks every visual slot of a sequence with one placeholder token, `[IMG]`, whose id must equal
`config.image_token_id`. In the BERT uncased WordPiece vocabulary the placeholder takes the slot of
`[unused0]` (id 1), so a BERT checkpoint keeps its vocabulary size and its text behaviour exactly.
"""

from collections.abc import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast


DEFAULT_IMAGE_TOKEN = "[IMG]"
# A slot of the BERT vocabulary that no text ever produces, reused for the placeholder.
BERT_PLACEHOLDER_SLOT = "[unused0]"


def add_image_token(
    tokenizer: PreTrainedTokenizerBase, image_token: str = DEFAULT_IMAGE_TOKEN
) -> tuple[PreTrainedTokenizerBase, int]:
    """Returns a tokenizer that knows `image_token` as a special token, and the token's id.

    - If the vocabulary already holds `image_token`, it is registered as a special token (so text never
      splits it) and the same tokenizer is returned.
    - Else, for a BERT WordPiece tokenizer whose vocabulary has `[unused0]`, that entry is renamed to
      `image_token`: the vocabulary size and every other id stay the same.
    - Else the token is appended to the vocabulary (id `len(tokenizer)`); the model's embeddings must then
      be resized to the new vocabulary size (`model.resize_token_embeddings(len(tokenizer))`).
    """
    vocab = tokenizer.get_vocab()
    if image_token not in vocab and BERT_PLACEHOLDER_SLOT in vocab and isinstance(tokenizer, BertTokenizer):
        vocab[image_token] = vocab.pop(BERT_PLACEHOLDER_SLOT)
        init_kwargs = {
            key: value
            for key, value in tokenizer.init_kwargs.items()
            if key
            in (
                "do_lower_case",
                "unk_token",
                "sep_token",
                "pad_token",
                "cls_token",
                "mask_token",
                "tokenize_chinese_chars",
                "strip_accents",
                "model_max_length",
            )
        }
        tokenizer = BertTokenizer(vocab=vocab, **init_kwargs)
    tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
    return tokenizer, tokenizer.convert_tokens_to_ids(image_token)


SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", DEFAULT_IMAGE_TOKEN]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 30522,
    kind: str = "wordpiece",
    lowercase: bool = True,
    min_frequency: int = 2,
    show_progress: bool = False,
) -> PreTrainedTokenizerFast:
    """Trains a tokenizer on a text corpus with `tokenizers` and returns it as a transformers tokenizer.

    Both kinds use BERT's special tokens and `[CLS] A [SEP] (B [SEP])` templates, and hold the visual
    placeholder `[IMG]` as a special token (`tokenizer.convert_tokens_to_ids("[IMG]")` is the id to put in
    `VLMixerConfig.image_token_id`; `len(tokenizer)` is its `vocab_size`).

    Args:
        texts: the training corpus, one sentence or paragraph per item (an iterator is consumed once).
        vocab_size: the target vocabulary size, special tokens included.
        kind: `"wordpiece"` (BERT normalization and pre-tokenization) or `"bpe"` (byte-level BPE, which
            never produces an unknown token).
        lowercase: lower-case the text first (as BERT uncased does).
        min_frequency: pairs seen fewer times are not merged.
        show_progress: show the `tokenizers` progress bar.
    """
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            show_progress=show_progress,
        )
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.Sequence(
            [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
        )
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=show_progress,
        )
    else:
        raise ValueError(f"kind must be 'wordpiece' or 'bpe', got {kind!r}.")

    def non_empty(lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            if line and line.strip():
                yield line

    tokenizer.train_from_iterator(non_empty(texts), trainer=trainer)
    if tokenizer.get_vocab_size() <= len(SPECIAL_TOKENS):
        raise ValueError("The training corpus is empty: train_tokenizer needs at least one non-empty text.")
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        additional_special_tokens=[DEFAULT_IMAGE_TOKEN],
        model_max_length=512,
    )


def check_image_token(tokenizer: PreTrainedTokenizerBase, image_token: str, image_token_id: int) -> None:
    """Raises `ValueError` unless `image_token` is a special token of `tokenizer` with id `image_token_id`."""
    if image_token not in tokenizer.get_vocab():
        raise ValueError(
            f"The tokenizer has no visual placeholder token {image_token!r}; add it with "
            "`processing.tokenization.add_image_token(tokenizer)`."
        )
    if image_token not in tokenizer.all_special_tokens:
        raise ValueError(
            f"The visual placeholder {image_token!r} must be a special token of the tokenizer so that text "
            "never splits it; add it with `processing.tokenization.add_image_token(tokenizer)`."
        )
    token_id = tokenizer.convert_tokens_to_ids(image_token)
    if token_id != image_token_id:
        raise ValueError(
            f"The tokenizer maps the visual placeholder {image_token!r} to id {token_id}, but the model "
            f"expects config.image_token_id={image_token_id}."
        )
