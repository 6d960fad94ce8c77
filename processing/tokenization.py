"""Tokenizer handling: the visual placeholder token.

VLMixer marks every visual slot of a sequence with one placeholder token, `[IMG]`, whose id must equal
`config.image_token_id`. In the BERT uncased WordPiece vocabulary the placeholder takes the slot of
`[unused0]` (id 1), so a BERT checkpoint keeps its vocabulary size and its text behaviour exactly.
"""

from transformers import BertTokenizer, PreTrainedTokenizerBase


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
