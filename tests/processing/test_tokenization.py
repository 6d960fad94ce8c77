import pytest
from transformers import AutoTokenizer

from processing.tokenization import add_image_token, check_image_token, train_tokenizer


CORPUS = [
    "A dog runs across the grass next to a red frisbee.",
    "Two dogs sit near a traffic light on the street.",
    "A man rides a skateboard down the road.",
    "",
] * 30


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_train_tokenizer_round_trip(tmp_path, kind):
    tokenizer = train_tokenizer(CORPUS, vocab_size=300, kind=kind, min_frequency=1)
    image_token_id = tokenizer.convert_tokens_to_ids("[IMG]")
    check_image_token(tokenizer, "[IMG]", image_token_id)
    ids = tokenizer("two dogs [IMG] near the road").input_ids
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert image_token_id in ids
    assert tokenizer.decode(ids, skip_special_tokens=True).strip().startswith("two dogs")
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("a red frisbee").input_ids == tokenizer("a red frisbee").input_ids
    assert reloaded.convert_tokens_to_ids("[IMG]") == image_token_id


def test_train_tokenizer_rejects_bad_input():
    with pytest.raises(ValueError, match="kind must be"):
        train_tokenizer(CORPUS, kind="unigram")
    with pytest.raises(ValueError, match="corpus is empty"):
        train_tokenizer(["", "  "], vocab_size=100)


def test_bert_placeholder_takes_the_unused0_slot(minilm_path):
    bert = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer, image_token_id = add_image_token(bert)
    assert image_token_id == 1 and len(tokenizer) == len(bert)
    text = "a giraffe next to a traffic light"
    assert tokenizer(text).input_ids == bert(text).input_ids
    check_image_token(tokenizer, "[IMG]", 1)
    with pytest.raises(
        ValueError,
        match="maps the visual placeholder '\\[IMG\\]' to id 1, but the model expects config.image_token_id=5",
    ):
        check_image_token(tokenizer, "[IMG]", 5)
    with pytest.raises(ValueError, match="has no visual placeholder token"):
        check_image_token(bert, "[IMG]", 1)
