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
"""Tests of the patch gallery: building, contextual concepts, the concept index, saving and loading."""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from processing.feature_extraction_vlmixer import RegionFeatures
from processing.patch_gallery import GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME, PatchGallery


ARRAY_NAMES = (
    "features",
    "boxes",
    "concept_ids",
    "scores",
    "image_index",
    "context_offsets",
    "context_concept_ids",
    "context_scores",
    "concept_offsets",
    "concept_patch_ids",
)

IMAGES = [
    [("Dog", 0.9), ("dogs", 0.6), ("person", 0.8), ("traffic light", 0.3)],
    [("person", 0.7), ("People", 0.95), ("frisbee", 0.4)],
    [("dog", 0.2)],
    [],
    [("Traffic Lights", 0.85), ("car", 0.05)],
]


def make_records(images, feature_dim=6, seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for image_number, regions in enumerate(images):
        num_regions = len(regions)
        x1 = rng.uniform(0, 50, num_regions)
        y1 = rng.uniform(0, 30, num_regions)
        records.append(
            RegionFeatures(
                features=rng.normal(size=(num_regions, feature_dim)).astype(np.float32),
                boxes=np.stack([x1, y1, x1 + 40, y1 + 60], axis=1).reshape(num_regions, 4),
                image_width=100,
                image_height=120,
                labels=[label for label, _ in regions],
                scores=np.array([score for _, score in regions], dtype=np.float32).reshape(num_regions),
                image_id=f"coco-{image_number}",
                image_path=f"/images/{image_number}.jpg",
            )
        )
    return records


@pytest.fixture(scope="module")
def records():
    return make_records(IMAGES)


@pytest.fixture(scope="module")
def gallery(records):
    return PatchGallery.build(records, detector="test-detector", show_progress=False)


def test_build_patches_and_concepts(gallery, records):
    assert gallery.concepts == ["car", "dog", "frisbee", "person", "traffic light"]  # normalized, sorted
    assert gallery.num_patches == 10 and gallery.num_images == 5 and gallery.num_concepts == 5
    assert gallery.feature_dim == 6 and gallery.feature_dtype == "float16"
    # One patch per region, in record order; "Dog"/"dogs" and "person"/"People" are one concept each.
    assert [gallery.concepts[c] for c in gallery.concept_ids] == [
        "dog", "dog", "person", "traffic light", "person", "person", "frisbee", "dog", "traffic light", "car"
    ]  # fmt: skip
    assert gallery.image_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 4, 4]
    assert gallery.image_ids == [f"coco-{i}" for i in range(5)]
    np.testing.assert_array_equal(
        gallery.features, np.concatenate([r.features for r in records]).astype(np.float16)
    )
    np.testing.assert_allclose(gallery.boxes, np.concatenate([r.normalized_boxes() for r in records]))
    np.testing.assert_array_equal(gallery.scores, np.concatenate([r.scores for r in records]))
    assert gallery.image_id_of(7) == "coco-2" and gallery.image_path_of(7) == "/images/2.jpg"
    assert gallery.detector == "test-detector"


def test_contexts_are_the_other_concepts_of_the_image_with_max_confidence(gallery):
    dog, person, light, frisbee = (
        gallery.concept_id(n) for n in ("dog", "person", "traffic light", "frisbee")
    )
    # Image 0: dog 0.9, dog 0.6, person 0.8, traffic light 0.3.
    for patch_id in (0, 1):
        concept_ids, scores = gallery.contexts(patch_id)
        assert concept_ids.tolist() == [person, light]
        np.testing.assert_allclose(scores, [0.8, 0.3], rtol=1e-6)
    concept_ids, scores = gallery.contexts(2)
    assert concept_ids.tolist() == [dog, light]
    np.testing.assert_allclose(scores, [0.9, 0.3], rtol=1e-6)  # the better of the two dogs
    # Image 1: "person" and "People" are one concept; it is never its own context.
    concept_ids, scores = gallery.contexts(4)
    assert concept_ids.tolist() == [frisbee]
    concept_ids, scores = gallery.contexts(6)
    assert concept_ids.tolist() == [person]
    np.testing.assert_allclose(scores, [0.95], rtol=1e-6)
    # Image 2: a lone dog has no context.
    assert gallery.contexts(7)[0].tolist() == []


def test_contexts_match_a_brute_force_derivation():
    rng = np.random.default_rng(3)
    num_patches, num_concepts = 3000, 12
    image_index = np.sort(rng.integers(0, 500, num_patches))
    concept_ids = rng.integers(0, num_concepts, num_patches)
    scores = rng.random(num_patches).astype(np.float32)
    gallery = PatchGallery.from_arrays(
        features=np.zeros((num_patches, 1), np.float16),
        boxes=np.zeros((num_patches, 4), np.float32),
        concept_ids=concept_ids,
        scores=scores,
        image_index=image_index,
        concepts=[f"concept {i:02d}" for i in range(num_concepts)],
        image_ids=[str(i) for i in range(500)],
    )
    best: dict[tuple[int, int], float] = {}
    for image, concept, score in zip(
        image_index.tolist(), concept_ids.tolist(), scores.tolist(), strict=True
    ):
        best[image, concept] = max(best.get((image, concept), 0.0), score)
    for patch_id in range(num_patches):
        image, own = int(image_index[patch_id]), int(concept_ids[patch_id])
        expected = sorted((c, s) for (i, c), s in best.items() if i == image and c != own)
        concept_ids_i, scores_i = gallery.contexts(patch_id)
        assert concept_ids_i.tolist() == [c for c, _ in expected]
        assert scores_i.tolist() == [s for _, s in expected]


def test_concept_index_and_lookup(gallery):
    dog = gallery.concept_id("Dogs")  # normalized before the lookup
    assert gallery.concepts[dog] == "dog" and gallery.has_concept("DOG") and not gallery.has_concept("cat")
    assert gallery.patches_of(dog).tolist() == [0, 1, 7]
    for concept_id in range(gallery.num_concepts):
        patches = gallery.patches_of(concept_id)
        assert (gallery.concept_ids[patches] == concept_id).all()
    assert sorted(np.concatenate([gallery.patches_of(c) for c in range(gallery.num_concepts)])) == list(
        range(gallery.num_patches)
    )
    with pytest.raises(ValueError, match="Unknown concept 'Giraffes' \\(normalized 'giraffe'\\)"):
        gallery.concept_id("Giraffes")


def test_accessors_return_float_tensors(gallery):
    features = gallery.get_features([3, 0, 3])
    assert features.dtype == torch.float32 and features.shape == (3, gallery.feature_dim)
    np.testing.assert_array_equal(features.numpy(), gallery.features[[3, 0, 3]].astype(np.float32))
    boxes = gallery.get_boxes(torch.tensor([1, 2]))
    assert boxes.dtype == torch.float32 and boxes.shape == (2, 4)
    assert gallery.get_features([]).shape == (0, gallery.feature_dim)
    with pytest.raises(IndexError):
        gallery.get_features([gallery.num_patches])
    with pytest.raises(ValueError, match="read-only"):
        gallery.features[0] = 1.0  # the arrays cannot be corrupted through the attributes
    unpickled = pickle.loads(pickle.dumps(gallery))  # an in-memory gallery pickles as its arrays
    np.testing.assert_array_equal(unpickled.context_scores, gallery.context_scores)
    assert not unpickled.features.flags.writeable and unpickled.concepts == gallery.concepts


def test_build_options_and_errors(records):
    kept = PatchGallery.build(records, feature_dtype="float32", min_score=0.5, show_progress=False)
    assert kept.feature_dtype == "float32"
    assert kept.scores.tolist() == pytest.approx([0.9, 0.6, 0.8, 0.7, 0.95, 0.85])
    assert kept.num_images == 5  # images without a kept region stay in the image list
    assert kept.concepts == ["dog", "person", "traffic light"]
    # Contexts only see kept regions: the 0.3 traffic light of image 0 is gone.
    assert kept.contexts(0)[0].tolist() == [kept.concept_id("person")]

    with pytest.raises(ValueError, match="occurs in more than one record"):
        PatchGallery.build(records + records[:1], show_progress=False)
    bad = make_records([[("dog", 1.5)]])
    with pytest.raises(ValueError, match="scores"):
        PatchGallery.build(bad, show_progress=False)
    other_width = make_records([[("dog", 0.5)]], feature_dim=4)[0]
    other_width.image_id = "other"
    with pytest.raises(ValueError, match="expected feature_dim=6"):
        PatchGallery.build([*records, other_width], show_progress=False)
    with pytest.raises(ValueError, match="feature_dtype"):
        PatchGallery.build(records, feature_dtype="int8", show_progress=False)
    with pytest.raises(ValueError, match="no records"):
        PatchGallery.build([], show_progress=False)
    with pytest.raises(ValueError, match="not normalized"):
        PatchGallery.from_arrays(
            np.zeros((1, 2)), np.zeros((1, 4)), [0], [0.5], [0], concepts=["Dogs"], image_ids=["a"]
        )


def test_save_and_load_round_trip(gallery, tmp_path):
    written = gallery.save_pretrained(tmp_path / "gallery")
    assert sorted(os.listdir(tmp_path / "gallery")) == sorted([GALLERY_CONFIG_NAME, GALLERY_WEIGHTS_NAME])
    assert [os.path.basename(path) for path in written] == [GALLERY_WEIGHTS_NAME, GALLERY_CONFIG_NAME]

    loaded = PatchGallery.from_pretrained(tmp_path / "gallery")
    for name in ARRAY_NAMES:
        original, reloaded = getattr(gallery, name), getattr(loaded, name)
        assert reloaded.dtype == original.dtype and reloaded.shape == original.shape, name
        np.testing.assert_array_equal(reloaded, original, err_msg=name)
    assert loaded.concepts == gallery.concepts and loaded.image_ids == gallery.image_ids
    assert loaded.image_paths == gallery.image_paths and loaded.detector == "test-detector"
    assert loaded.contexts(2)[0].tolist() == gallery.contexts(2)[0].tolist()

    # Memory-mapped, read-only, and a valid safetensors file.
    assert loaded.is_memory_mapped and not gallery.is_memory_mapped
    for name in ARRAY_NAMES:
        array = getattr(loaded, name)
        assert isinstance(array, np.memmap) and not array.flags.writeable, name
    from safetensors.numpy import load_file

    tensors = load_file(tmp_path / "gallery" / GALLERY_WEIGHTS_NAME)
    assert set(tensors) == set(ARRAY_NAMES)
    np.testing.assert_array_equal(tensors["features"], gallery.features)

    # A memory-mapped gallery pickles as its folder and can be saved again over its own files.
    unpickled = pickle.loads(pickle.dumps(loaded))
    assert len(pickle.dumps(loaded)) < 1000 and unpickled.is_memory_mapped
    loaded.save_pretrained(tmp_path / "gallery")
    assert PatchGallery.from_pretrained(tmp_path / "gallery").concepts == gallery.concepts


def test_loading_reads_no_feature_data(gallery, tmp_path):
    gallery.save_pretrained(tmp_path)
    weights = tmp_path / GALLERY_WEIGHTS_NAME
    loaded = PatchGallery.from_pretrained(tmp_path)
    # Rewrite the feature bytes in place after opening: a memory map sees the new bytes, a copy would not.
    offset = loaded.features.offset
    with open(weights, "r+b") as file:
        file.seek(offset)
        file.write(np.full(gallery.feature_dim, 7.0, dtype=np.float16).tobytes())
    assert loaded.get_features([0])[0].tolist() == [7.0] * gallery.feature_dim


def test_bad_files_raise_value_errors(gallery, tmp_path):
    with pytest.raises(ValueError, match="is missing"):
        PatchGallery.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="Could not find a patch gallery"):
        PatchGallery.from_pretrained(str(tmp_path / "no-such-folder"), local_files_only=True)

    folder = tmp_path / "gallery"
    gallery.save_pretrained(folder)
    weights, config_path = folder / GALLERY_WEIGHTS_NAME, folder / GALLERY_CONFIG_NAME
    good_weights, good_config = weights.read_bytes(), config_path.read_text()

    def expect_error(match):
        with pytest.raises(ValueError, match=match):
            PatchGallery.from_pretrained(folder)
        weights.write_bytes(good_weights)
        config_path.write_text(good_config)

    weights.write_bytes(good_weights[:-10])
    expect_error("truncated")
    weights.write_bytes(good_weights[:4])
    expect_error("not a safetensors file")
    weights.write_bytes(good_weights[:8] + b"{not json" + good_weights[17:])
    expect_error("not valid JSON")
    config_path.write_text("{")
    expect_error("not valid JSON")

    config = json.loads(good_config)
    config_path.write_text(json.dumps({**config, "num_patches": config["num_patches"] + 1}))
    expect_error("implies")
    config_path.write_text(json.dumps({**config, "concepts": config["concepts"][:-1]}))
    expect_error("inconsistent")
    config_path.write_text(json.dumps({**config, "format_version": 99}))
    expect_error("format version 99")
    del config["feature_dim"]
    config_path.write_text(json.dumps(config))
    expect_error("missing the keys \\['feature_dim'\\]")

    # Files of two different saves do not mix.
    other = tmp_path / "other"
    gallery.save_pretrained(other)
    weights.write_bytes((other / GALLERY_WEIGHTS_NAME).read_bytes())
    expect_error("does not belong to")


def test_gallery_without_contextual_concepts_saves_and_loads(tmp_path):
    """Every image has a single concept: the context arrays are empty and must still round-trip."""
    import numpy as np

    from processing import PatchGallery, RegionFeatures

    record = RegionFeatures(
        np.ones((2, 4)), [[0, 0, 1, 1], [0, 0, 2, 2]], 10, 10, ["dog", "dog"], [0.5, 0.6], "a"
    )
    PatchGallery.build([record], show_progress=False).save_pretrained(tmp_path / "g")
    loaded = PatchGallery.from_pretrained(tmp_path / "g")
    assert loaded.num_patches == 2 and len(loaded.contexts(0)[0]) == 0
