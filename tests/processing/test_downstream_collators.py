"""Tests of the downstream collators (`processing.downstream_collators`): shapes and dtypes, labels, the NLVR2
pair dimension, retrieval negatives and their seeding, and that the batches feed `VLMixerModel`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_vlmixer import VLMixerConfig, VLMixerModel
from processing.downstream_collators import (
    DataCollatorForImageTextPairs,
    DataCollatorForImageTextRetrieval,
    DataCollatorForNLVR2,
    DataCollatorForVQA,
    lookup_regions,
)
from processing.downstream_readers import build_vqa_answer_vocabulary, read_nlvr2, read_vqa_v2
from processing.region_store import RegionStore
from processing.synthetic import make_synthetic_corpus
from tests.conftest import TINY


FEATURE_DIM = 16
INT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


@pytest.fixture(scope="module")
def world(tmp_path_factory, minilm_path):
    """A processor on the real BERT vocabulary, a region store of 8 synthetic images, a tiny model."""
    from transformers import AutoTokenizer

    from processing import VLMixerProcessor, VLMixerRegionFeatureExtractor, add_image_token

    tokenizer, image_token_id = add_image_token(AutoTokenizer.from_pretrained(minilm_path))
    processor = VLMixerProcessor(
        VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM, max_regions=6),
        tokenizer,
        valp_max_length=24,
        tavp_max_length=40,
    )
    corpus = make_synthetic_corpus(num_images=8, num_sentences=8, feature_dim=FEATURE_DIM, seed=0)
    store = RegionStore.from_records(
        corpus.records, tmp_path_factory.mktemp("downstream") / "regions", feature_dtype="float32"
    )
    config = VLMixerConfig(
        **{
            **TINY,
            "vocab_size": len(tokenizer),
            "visual_feature_dim": FEATURE_DIM,
            "image_token_id": image_token_id,
        }
    )
    torch.manual_seed(0)
    model = VLMixerModel(config).eval()
    return {"processor": processor, "store": store, "model": model, "records": corpus.records}


def _check_joint(batch, rows, prefix=""):
    seq_len = batch[prefix + "input_ids"].shape[-1]
    for key in INT_KEYS:
        assert batch[prefix + key].shape == (*rows, seq_len) and batch[prefix + key].dtype == torch.int64, key
    num_regions = batch[prefix + "visual_features"].shape[-2]
    assert batch[prefix + "visual_features"].shape == (*rows, num_regions, FEATURE_DIM)
    assert batch[prefix + "visual_boxes"].shape == (*rows, num_regions, 4)
    assert batch[prefix + "visual_features"].dtype == batch[prefix + "visual_boxes"].dtype == torch.float32


def _model_inputs(batch, prefix=""):
    keys = (*INT_KEYS, "visual_features", "visual_boxes")
    return {key: batch[prefix + key] for key in keys if prefix + key in batch}


# ---------------------------------------------------------------------------------------------------- VQA / GQA


def test_vqa_collator_from_read_vqa_v2(world, tmp_path):
    """Rows of `read_vqa_v2` (official layout, image ids naming the store's images) -> soft-score batch."""
    questions, annotations = [], []
    for k in range(12):
        answers = ["dog"] * 4 + ["cat"] * 3 + ["two"] * 3 if k == 0 else ["cat"] * 10
        questions.append({"image_id": k % 8, "question": f"what animal is number {k}?", "question_id": k})
        annotations.append(
            {"question_id": k, "image_id": k % 8, "multiple_choice_answer": answers[0],
             "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(answers)]}
        )  # fmt: skip
    (tmp_path / "q.json").write_text(json.dumps({"questions": questions}))
    (tmp_path / "a.json").write_text(json.dumps({"annotations": annotations}))
    label2id = build_vqa_answer_vocabulary(tmp_path / "a.json", min_count=1)
    assert label2id == {"cat": 0, "dog": 1}
    dataset = read_vqa_v2(
        tmp_path / "q.json", tmp_path / "a.json", label2id, image_id_format="synthetic-{image_id}"
    )
    collator = DataCollatorForVQA(
        world["processor"], world["store"], len(label2id), "multi_label_classification"
    )
    batch = collator([dataset[i] for i in range(4)])
    _check_joint(batch, (4,))
    assert batch["labels"].shape == (4, 2) and batch["labels"].dtype == torch.float32
    torch.testing.assert_close(batch["labels"][0], torch.tensor([0.9, 1.0]), rtol=0, atol=0)
    torch.testing.assert_close(batch["labels"][1], torch.tensor([1.0, 0.0]), rtol=0, atol=0)
    # [CLS] question [SEP] [IMG] * regions: one slot per region of the image, segment 1 for the regions.
    image_token_id = world["processor"].image_token_id
    slots = batch["input_ids"] == image_token_id
    assert slots.sum(1).tolist() == [len(world["records"][k]) for k in range(4)]
    assert (batch["token_type_ids"][slots] == 1).all()
    outputs = world["model"](**_model_inputs(batch))
    assert outputs.pooler_output.shape == (4, world["model"].config.hidden_size)

    # The test split: no annotations, no labels.
    unlabelled = read_vqa_v2(tmp_path / "q.json", image_id_format="synthetic-{image_id}")
    assert "labels" not in collator([unlabelled[i] for i in range(3)])


def test_gqa_single_label_and_errors(world):
    examples = [
        {"question": "is it a dog?", "image_id": "synthetic-1", "label": 2},
        {"question": "what is on the left?", "image_id": "synthetic-2", "label": -100},  # outside the vocab
        {"question": "which color?", "image_id": "synthetic-3", "label": 0},
    ]
    collator = DataCollatorForVQA(world["processor"], world["store"], 3, "single_label_classification")
    batch = collator(examples)
    _check_joint(batch, (3,))
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [2, -100, 0]
    assert "labels" not in collator([{k: v for k, v in e.items() if k != "label"} for e in examples])

    with pytest.raises(
        ValueError, match=r"Image 'synthetic-99' \(example 1 of the batch\) is not in the region store"
    ):
        collator([examples[0], {**examples[1], "image_id": "synthetic-99"}])
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        collator([{**examples[0], "label": 3}])
    with pytest.raises(ValueError, match="all labelled or all unlabelled"):
        collator([examples[0], {"question": "q?", "image_id": "synthetic-1"}])
    with pytest.raises(ValueError, match="remove_unused_columns=False"):
        collator([{"image_id": "synthetic-1", "label": 0}])
    with pytest.raises(ValueError, match="problem_type"):
        DataCollatorForVQA(world["processor"], world["store"], 3, "regression")
    multi = DataCollatorForVQA(world["processor"], world["store"], 3)
    with pytest.raises(ValueError, match="outside"):
        multi([{"question": "q?", "image_id": "synthetic-1", "labels": [5], "scores": [1.0]}])


def test_lookup_regions_uses_string_ids(world):
    record = world["records"][0]
    # An int image id is looked up as a string (as an int, RegionStore would read a row).
    assert lookup_regions({"5": record}, [5])[0] is record
    with pytest.raises(ValueError, match="Image '6'"):
        lookup_regions({"5": record}, [6])


# ------------------------------------------------------------------------------------------------------- NLVR2


def test_nlvr2_pairs(world, tmp_path):
    path = tmp_path / "dev.json"
    rows = [
        {"identifier": "dev-1-0-0", "sentence": "there are two dogs in the left image.", "label": "True"},
        {"identifier": "dev-1-1-0", "sentence": "a cat.", "label": "False"},
        {"identifier": "dev-2-0-1", "sentence": "both images show a car next to a tree.", "label": "True"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = read_nlvr2(path)
    # Map the NLVR2 image ids onto the synthetic store.
    store = {
        image_id: world["records"][k]
        for k, image_id in enumerate([*dataset["left_image_id"], *dataset["right_image_id"]])
    }
    collator = DataCollatorForNLVR2(world["processor"], store)
    examples = [dataset[i] for i in range(3)]
    batch = collator(examples)
    _check_joint(batch, (3, 2))
    assert batch["labels"].dtype == torch.int64 and batch["labels"].tolist() == [1, 0, 1]
    # Half 0 is the sentence with the left image, half 1 with the right image.
    processor = world["processor"]
    for b, example in enumerate(examples):
        for half, key in enumerate(("left_image_id", "right_image_id")):
            alone = processor(text=example["sentence"], regions=store[example[key]], return_tensors="pt")
            length, regions = alone["input_ids"].shape[1], alone["visual_features"].shape[1]
            assert torch.equal(batch["input_ids"][b, half, :length], alone["input_ids"][0])
            assert batch["attention_mask"][b, half].sum() == length
            assert torch.equal(batch["visual_features"][b, half, :regions], alone["visual_features"][0])
    # Flattened to (2B, ...) the pairs feed the encoder.
    flat = {key: value.flatten(0, 1) for key, value in _model_inputs(batch).items()}
    assert flat["input_ids"].shape[0] == 6 and flat["visual_boxes"].shape[:2] == (
        6,
        batch["visual_boxes"].shape[2],
    )
    outputs = world["model"](**flat)
    pooled = outputs.pooler_output.view(3, 2, -1)  # the head concatenates the two halves
    assert pooled.shape == (3, 2, world["model"].config.hidden_size)


# --------------------------------------------------------------------------------------------------- retrieval


def _captions(image_numbers):
    return [
        {"caption": f"a photo number {k} of something.", "image_id": f"synthetic-{n}"}
        for k, n in enumerate(image_numbers)
    ]


def _negative_sources(batch, size):
    """For each negative row B + i, the positive rows j whose image it shows (same visual features)."""
    features = batch["visual_features"]
    return [[j for j in range(size) if torch.equal(features[size + i], features[j])] for i in range(size)]


def test_retrieval_batch(world):
    images = [0, 1, 1, 2, 3, 0]
    examples = _captions(images)
    collator = DataCollatorForImageTextRetrieval(world["processor"], world["store"], seed=0)
    batch = collator(examples)
    size = len(examples)
    _check_joint(batch, (2 * size,))
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [1.0] * size + [0.0] * size
    # Positives: caption i with image i; negatives: caption i again, with an image of another example.
    assert torch.equal(batch["input_ids"][:size], batch["input_ids"][size:])
    for i, sources in enumerate(_negative_sources(batch, size)):
        assert sources and all(images[j] != images[i] for j in sources)

    # The text view is processor(text=captions); the image view processor(regions=...): tags + regions.
    processor = world["processor"]
    text = processor(text=[e["caption"] for e in examples], return_tensors="pt")
    assert torch.equal(batch["text_input_ids"], text["input_ids"])
    assert torch.equal(batch["text_attention_mask"], text["attention_mask"])
    assert batch["text_input_ids"].dtype == torch.int64 and batch["text_input_ids"].shape[0] == size
    _check_joint(batch, (size,), prefix="image_")
    image = processor(regions=[world["store"][e["image_id"]] for e in examples], return_tensors="pt")
    assert torch.equal(batch["image_input_ids"], image["input_ids"])
    assert torch.equal(batch["image_visual_features"], image["visual_features"])
    assert (batch["image_token_type_ids"] == 1).any(1).all()  # tags and regions are segment 1
    model = world["model"]
    for inputs in (_model_inputs(batch), _model_inputs(batch, "image_")):
        assert torch.isfinite(model(**inputs).pooler_output).all()
    text_out = model(input_ids=batch["text_input_ids"], attention_mask=batch["text_attention_mask"])
    assert text_out.pooler_output.shape[0] == size


def test_retrieval_seeding(world):
    examples = _captions([0, 1, 2, 3, 4, 5, 6, 7])
    store, processor = world["store"], world["processor"]
    first = DataCollatorForImageTextRetrieval(processor, store, seed=5)
    batch = first(examples)
    first(_captions([7, 6, 5]))  # no hidden state: other batches in between change nothing
    again = DataCollatorForImageTextRetrieval(processor, store, seed=5)(examples)
    assert batch.keys() == again.keys() and all(torch.equal(batch[key], again[key]) for key in batch)

    def negatives(**kwargs):
        return _negative_sources(DataCollatorForImageTextRetrieval(processor, store, **kwargs)(examples), 8)

    sources = negatives(seed=5)
    # Another seed or epoch changes the draws (7 candidates per caption: two draws agree with prob. 7**-8).
    assert negatives(seed=6) != sources and negatives(seed=5, epoch=1) != sources
    # With an `idx` per example, the draws follow (seed, epoch, idx) as in `processing.collators`.
    indexed = [{**e, "idx": i} for i, e in enumerate(examples)]
    rng = DataCollatorForImageTextRetrieval(processor, store, seed=5).batch_rng(indexed)
    assert rng.integers(1 << 30) == np.random.default_rng([5, 0, *range(8)]).integers(1 << 30)


def test_retrieval_seeding_is_the_same_in_another_process(world):
    examples = _captions([0, 1, 2, 3, 1])
    collator = DataCollatorForImageTextRetrieval(world["processor"], world["store"], seed=11)
    here = collator.batch_rng(examples).integers(1 << 62, size=4).tolist()
    code = (
        "import json, sys\n"
        "from processing.downstream_collators import DataCollatorForImageTextRetrieval\n"
        "examples = json.loads(sys.argv[1])\n"
        "rng = DataCollatorForImageTextRetrieval(None, None, seed=11).batch_rng(examples)\n"
        "print(json.dumps(rng.integers(1 << 62, size=4).tolist()))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(examples)],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "123"},  # str hashes differ from this process's
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == here


def test_retrieval_single_image_batch_draws_from_the_store(world):
    examples = _captions([4, 4, 4])
    collator = DataCollatorForImageTextRetrieval(world["processor"], world["store"], seed=1)
    batch = collator(examples)
    positive = batch["visual_features"][0]
    for i in range(3, 6):
        assert not torch.equal(batch["visual_features"][i], positive)
    lonely = {"synthetic-4": world["store"]["synthetic-4"]}
    with pytest.raises(ValueError, match="no negative can be drawn"):
        DataCollatorForImageTextRetrieval(world["processor"], lonely)(examples)
    # A mapping store works too: the negative is another key's record.
    store = {f"synthetic-{k}": world["store"][f"synthetic-{k}"] for k in (3, 4)}
    batch = DataCollatorForImageTextRetrieval(world["processor"], store, seed=2)(examples)
    expected = world["processor"](regions=[store["synthetic-3"]], return_tensors="pt")["visual_features"][0]
    assert torch.equal(batch["visual_features"][3, : expected.shape[0]], expected)


def test_image_text_pairs(world):
    examples = _captions([0, 5, 5])
    batch = DataCollatorForImageTextPairs(world["processor"], world["store"])(examples)
    _check_joint(batch, (3,))
    assert "labels" not in batch
    assert world["model"](**batch).pooler_output.shape[0] == 3
