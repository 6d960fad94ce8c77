"""Retrieval evaluation: full cross-encoder ranking, two-stage ranking and the joint rows built from pieces."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from modeling_vlmixer import VLMixerConfig, VLMixerForImageTextRetrieval
from modeling_vlmixer.retrieval import (
    RetrievalScores,
    evaluate_retrieval,
    rank_image_text,
    shortlist_pairs,
)
from processing import RegionFeatures, VLMixerProcessor, VLMixerRegionFeatureExtractor, add_image_token
from processing.metrics import retrieval_recall
from processing.synthetic import make_synthetic_corpus
from tests.conftest import TINY


FEATURE_DIM = 16
CAPTION_TEMPLATES = ("a {0} next to a {1}.", "there is a {1} and a big {0} in this picture.", "the {0}.")


@pytest.fixture(scope="module")
def processor(minilm_path):
    tokenizer, _ = add_image_token(AutoTokenizer.from_pretrained(minilm_path))
    extractor = VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM, max_regions=10)
    return VLMixerProcessor(extractor, tokenizer, valp_max_length=24, tavp_max_length=24)


@pytest.fixture(scope="module")
def model(processor):
    config = VLMixerConfig(
        **{
            **TINY,
            "vocab_size": len(processor.tokenizer),
            "visual_feature_dim": FEATURE_DIM,
            "image_token_id": processor.image_token_id,
            "contrastive_dim": 16,
        }
    )
    torch.manual_seed(0)
    return VLMixerForImageTextRetrieval(config).eval()


@pytest.fixture(scope="module")
def dataset():
    """6 images of 2-3 regions; 2 or 3 captions per image that mention its concepts."""
    corpus = make_synthetic_corpus(num_images=6, num_sentences=1, feature_dim=FEATURE_DIM, seed=3)
    texts, text_to_image = [], []
    for index, record in enumerate(corpus.records):
        for template in CAPTION_TEMPLATES[: 2 + index % 2]:
            texts.append(template.format(*record.labels[:2]))
            text_to_image.append(index)
    return texts, corpus.records, text_to_image


def _one_by_one(model, processor, texts, images) -> np.ndarray:
    """`(num_images, num_texts)` matching scores, one `model(**processor(text=[t], regions=[r]))` per pair."""
    scores = np.empty((len(images), len(texts)))
    with torch.no_grad():
        for i, record in enumerate(images):
            for t, text in enumerate(texts):
                inputs = processor(text=[text], regions=[record], return_tensors="pt")
                scores[i, t] = model(**inputs).logits.item()
    return scores


def _embedding_similarity(model, processor, texts, images) -> np.ndarray:
    with torch.no_grad():
        text_embeds = torch.cat(
            [model.get_text_features(**processor(text=[t], return_tensors="pt")) for t in texts]
        )
        image_embeds = torch.cat(
            [model.get_image_features(**processor(regions=[r], return_tensors="pt")) for r in images]
        )
    return (image_embeds @ text_embeds.T).numpy()


@pytest.fixture(scope="module")
def pair_scores(model, processor, dataset):
    texts, images, _ = dataset
    return _one_by_one(model, processor, texts, images)


# ---------------------------------------------------------------------------------------------------------
# Joint rows from pre-tokenized pieces
# ---------------------------------------------------------------------------------------------------------


def _pieces(processor, records):
    visual = processor.feature_extractor(records, return_tensors="np")
    counts = visual["visual_mask"].sum(axis=1)
    features = [visual["visual_features"][b, :n] for b, n in enumerate(counts)]
    boxes = [visual["visual_boxes"][b, :n] for b, n in enumerate(counts)]
    return features, boxes


@pytest.mark.parametrize("max_length", [None, 9])
@pytest.mark.parametrize("return_tensors", ["pt", None])
def test_joint_inputs_from_pieces_equal_the_processor_call(processor, dataset, max_length, return_tensors):
    texts, images, _ = dataset
    rng = np.random.default_rng(0)
    # Every pair once, in a shuffled order, plus an image without regions and one whose regions the extractor
    # reorders by confidence.
    empty = RegionFeatures.empty("empty", 100, 100, FEATURE_DIM)
    crowded = make_synthetic_corpus(num_images=1, num_sentences=1, feature_dim=FEATURE_DIM, seed=9).records[0]
    crowded.scores = np.array([0.2, 0.9, 0.5][: crowded.num_regions], dtype=np.float32)
    records = list(images) + [empty, crowded]
    pairs = [(t, i) for t in range(len(texts)) for i in range(len(records))]
    pairs = [pairs[p] for p in rng.permutation(len(pairs))]
    batch_texts = [texts[t] for t, _ in pairs]
    batch_records = [records[i] for _, i in pairs]

    expected = processor(
        text=batch_texts, regions=batch_records, max_length=max_length, return_tensors=return_tensors
    )
    word_ids = processor.word_pieces(texts)
    features, boxes = _pieces(processor, records)
    got = processor.joint_inputs(
        [word_ids[t] for t, _ in pairs],
        [features[i] for _, i in pairs],
        [boxes[i] for _, i in pairs],
        max_length=max_length,
        return_tensors=return_tensors,
    )
    assert set(got) == set(expected)
    for key in expected:
        assert type(got[key]) is type(expected[key]), key
        assert got[key].dtype == expected[key].dtype, key
        assert tuple(got[key].shape) == tuple(expected[key].shape), key
        assert (got[key] == expected[key]).all(), key
    if max_length == 9:  # the budget truncated some captions
        assert (np.asarray(expected["attention_mask"]).sum(axis=1) == 9).any()


def test_joint_inputs_checks_its_pieces(processor):
    features = [np.zeros((2, FEATURE_DIM), np.float32)]
    with pytest.raises(ValueError, match="region_boxes"):
        processor.joint_inputs([[2023]], features, [np.zeros((3, 4), np.float32)])
    with pytest.raises(ValueError, match="one of each per row"):
        processor.joint_inputs([[2023], [2003]], features, [np.zeros((2, 4), np.float32)])
    with pytest.raises(ValueError, match="max_length=3"):
        processor.joint_inputs([[2023]], features, [np.zeros((2, 4), np.float32)], max_length=3)


# ---------------------------------------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------------------------------------


def test_full_ranking_equals_the_pairs_scored_one_by_one(model, processor, dataset, pair_scores):
    texts, images, text_to_image = dataset
    model.train()
    result = rank_image_text(
        model, processor, texts, images, text_to_image, batch_size=7, show_progress=False
    )
    assert model.training  # the mode is restored
    model.eval()
    assert isinstance(result, RetrievalScores)
    assert result.scores.shape == (len(images), len(texts)) and result.scores.dtype == np.float64
    np.testing.assert_allclose(result.scores, pair_scores, rtol=1e-5, atol=1e-5)
    assert result.num_scored_pairs == len(images) * len(texts) and result.scored.all()
    assert result.scored_fraction == 1.0 and result.k is None and result.similarity is None


def test_two_stage_with_k_covering_everything_equals_full_ranking(model, processor, dataset, pair_scores):
    texts, images, text_to_image = dataset
    full = rank_image_text(model, processor, texts, images, text_to_image, show_progress=False)
    two_stage = rank_image_text(
        model, processor, texts, images, text_to_image, k=len(texts), batch_size=5, show_progress=False
    )
    assert two_stage.num_scored_pairs == len(images) * len(texts) and two_stage.scored.all()
    np.testing.assert_allclose(two_stage.scores, full.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(two_stage.scores, pair_scores, rtol=1e-5, atol=1e-5)
    assert two_stage.recall() == pytest.approx(full.recall())


def test_two_stage_reranks_the_top_k_by_embedding_similarity(model, processor, dataset, pair_scores):
    texts, images, text_to_image = dataset
    k = 2
    result = rank_image_text(
        model, processor, texts, images, text_to_image, k=k, batch_size=4, show_progress=False
    )
    similarity = _embedding_similarity(model, processor, texts, images)
    np.testing.assert_allclose(result.similarity, similarity, rtol=1e-5, atol=1e-5)

    expected = np.zeros(similarity.shape, dtype=bool)
    for t in range(len(texts)):  # each text's k most similar images
        expected[np.argsort(-similarity[:, t], kind="stable")[:k], t] = True
    for i in range(len(images)):  # each image's k most similar texts
        expected[i, np.argsort(-similarity[i], kind="stable")[:k]] = True
    np.testing.assert_array_equal(result.scored, expected)
    assert result.num_scored_pairs == expected.sum() < similarity.size
    assert (expected.sum(axis=0) >= k).all() and (expected.sum(axis=1) >= k).all()
    assert result.scored_fraction == pytest.approx(expected.sum() / similarity.size)

    # Re-ranked pairs carry their matching scores; the others lie below all of them, ordered by similarity.
    np.testing.assert_allclose(result.scores[expected], pair_scores[expected], rtol=1e-5, atol=1e-5)
    unscored = result.scores[~expected]
    assert unscored.max() < result.scores[expected].min()
    offsets = unscored - result.similarity[~expected].astype(np.float64)
    np.testing.assert_allclose(offsets, offsets[0], atol=1e-9)


def test_shortlist_pairs_takes_both_directions_and_breaks_ties_to_the_lower_index():
    similarity = np.array([[0.5, 0.5, 0.1], [0.5, 0.9, 0.2], [0.0, 0.0, 0.0], [0.1, 0.1, 0.3]])
    mask = shortlist_pairs(similarity, k=1, chunk_size=2)
    expected = np.zeros_like(mask)
    expected[[0, 1, 3], [0, 1, 2]] = True  # texts -> their best image (ties: image 0 over image 1)
    expected[[0, 1, 2, 3], [0, 1, 0, 2]] = True  # images -> their best text (image 2: all tied -> text 0)
    np.testing.assert_array_equal(mask, expected)
    assert shortlist_pairs(similarity, k=10).all()


def test_evaluate_retrieval_returns_the_recall_dict(model, processor, dataset, pair_scores):
    texts, images, text_to_image = dataset
    recall = evaluate_retrieval(model, processor, texts, images, text_to_image, k=3, show_progress=False)
    assert set(recall) == {
        "i2t_r1",
        "i2t_r5",
        "i2t_r10",
        "t2i_r1",
        "t2i_r5",
        "t2i_r10",
        "i2t_r_mean",
        "t2i_r_mean",
        "r_mean",
        "rsum",
    }
    result = rank_image_text(model, processor, texts, images, text_to_image, k=3, show_progress=False)
    assert recall == pytest.approx(retrieval_recall(result.scores, text_to_image))
    full = evaluate_retrieval(model, processor, texts, images, text_to_image, ks=[1, 2], show_progress=False)
    assert full == pytest.approx(retrieval_recall(pair_scores, text_to_image, ks=[1, 2]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be a positive int"),
        ({"k": -3}, "k must be a positive int"),
        ({"k": 1.5}, "k must be a positive int"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"text_to_image": [0, 1]}, "text_to_image must hold one image index per text"),
        ({"text_to_image": "drop-last"}, "text_to_image must hold one image index per text"),
        ({"text_to_image": "out-of-range"}, r"text_to_image must hold integer image indices in \[0, 6\)"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(model, processor, dataset, kwargs, message):
    texts, images, text_to_image = dataset
    if kwargs.get("text_to_image") == "drop-last":
        kwargs = {"text_to_image": text_to_image[:-1]}
    elif kwargs.get("text_to_image") == "out-of-range":
        kwargs = {"text_to_image": [6] + text_to_image[1:]}
    arguments = {"text_to_image": text_to_image, **kwargs}
    with pytest.raises(ValueError, match=message):
        rank_image_text(model, processor, texts, images, show_progress=False, **arguments)
    with pytest.raises(ValueError, match=message):
        evaluate_retrieval(model, processor, texts, images, show_progress=False, **arguments)


def test_empty_inputs_raise(model, processor, dataset):
    texts, images, _ = dataset
    with pytest.raises(ValueError, match="texts is empty"):
        rank_image_text(model, processor, [], images, show_progress=False)
    with pytest.raises(ValueError, match="images is empty"):
        rank_image_text(model, processor, texts, [], show_progress=False)


@pytest.mark.parametrize("k", [None, 2])
def test_batches_hold_one_joint_length_and_score_each_pair_once(model, processor, dataset, monkeypatch, k):
    texts, images, text_to_image = dataset
    built = []
    joint_inputs = processor.joint_inputs

    def spy(word_ids, region_features, region_boxes, **kwargs):
        batch = joint_inputs(word_ids, region_features, region_boxes, **kwargs)
        built.append(batch)
        return batch

    monkeypatch.setattr(processor, "joint_inputs", spy)
    result = rank_image_text(
        model, processor, texts, images, text_to_image, k=k, batch_size=4, show_progress=False
    )
    assert all(len(batch["input_ids"]) <= 4 for batch in built)
    assert all(bool(batch["attention_mask"].all()) for batch in built)  # one length per batch: no padding
    assert sum(len(batch["input_ids"]) for batch in built) == result.num_scored_pairs
