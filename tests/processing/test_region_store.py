"""Tests of the memory-mapped region store (`processing.region_store`)."""

import json
import os

import datasets
import numpy as np
import pytest

from modeling_vlmixer.cli import main as vlmixer
from processing.feature_extraction_vlmixer import RegionFeatures
from processing.patch_gallery import PatchGallery
from processing.region_store import (
    REGION_STORE_CONFIG_NAME,
    RegionStore,
    RegionStoreWriter,
    build_gallery,
    region_store_features,
)


FEATURE_DIM = 8


def make_record(
    index: int, num_regions: int, feature_dim: int = FEATURE_DIM, seed: int = 0
) -> RegionFeatures:
    rng = np.random.default_rng(seed * 1000 + index)
    corners = rng.uniform(0, 60, size=(num_regions, 2))
    sizes = rng.uniform(1, 40, size=(num_regions, 2))
    return RegionFeatures(
        features=rng.standard_normal((num_regions, feature_dim)).astype(np.float32),
        boxes=np.concatenate([corners, corners + sizes], axis=1).astype(np.float32),
        image_width=100 + index,
        image_height=120,
        labels=[("dog", "traffic light", "cat")[i % 3] for i in range(num_regions)],
        scores=rng.uniform(0, 1, size=num_regions).astype(np.float32),
        image_id=f"image-{index}",
        image_path=None if index % 2 else f"/images/{index}.jpg",
    )


def assert_same_record(actual: RegionFeatures, expected: RegionFeatures, feature_dtype=np.float32) -> None:
    assert actual.image_id == expected.image_id
    assert (actual.image_width, actual.image_height) == (expected.image_width, expected.image_height)
    np.testing.assert_array_equal(actual.features, expected.features.astype(feature_dtype).astype(np.float32))
    np.testing.assert_array_equal(actual.boxes, expected.boxes)
    np.testing.assert_array_equal(actual.scores, expected.scores)
    assert actual.labels == expected.labels
    assert actual.image_path == expected.image_path
    assert actual.features.dtype == actual.boxes.dtype == actual.scores.dtype == np.float32


@pytest.fixture
def records():
    # Region counts include empty images; 7 images in shards of 3 -> 3 shards.
    return [make_record(i, n) for i, n in enumerate([3, 0, 5, 1, 2, 0, 4])]


def test_round_trip_float32_is_exact(records, tmp_path):
    store = RegionStore.from_records(iter(records), tmp_path / "store", feature_dtype="float32", shard_size=3)

    assert len(store) == store.num_images == 7
    assert store.num_shards == 3
    assert store.num_regions == 15
    assert store.feature_dim == FEATURE_DIM and store.feature_dtype == "float32"
    assert store.image_ids == [record.image_id for record in records]
    for i, record in enumerate(records):
        assert_same_record(store[i], record)
        assert_same_record(store[record.image_id], record)
    for actual, expected in zip(store, records, strict=True):
        assert_same_record(actual, expected)
    assert_same_record(store[-1], records[-1])
    assert "image-2" in store and "nope" not in store
    # A float32 store returns views of the mapped file, not copies.
    features = store.get_features(2)
    assert features.dtype == np.float32 and not features.flags.writeable and not features.flags.owndata


def test_float16_store_casts_features(records, tmp_path):
    store = RegionStore.from_records(records, tmp_path / "store", feature_dtype="float16")

    assert store.get_features("image-2").dtype == np.float16
    for actual, expected in zip(store, records, strict=True):
        assert_same_record(actual, expected, feature_dtype=np.float16)


def test_store_is_a_memory_mapped_datasets_dataset(records, tmp_path):
    store = RegionStore.from_records(records, tmp_path / "store", feature_dtype="float32", shard_size=4)

    config = json.loads((tmp_path / "store" / REGION_STORE_CONFIG_NAME).read_text())
    assert [shard["name"] for shard in config["shards"]] == ["shard-00000", "shard-00001"]
    shard = datasets.load_from_disk(str(tmp_path / "store" / "shard-00000"))
    assert shard.features == region_store_features(FEATURE_DIM, "float32")
    assert isinstance(shard.data, datasets.table.MemoryMappedTable)
    row = shard.with_format("numpy")[2]
    np.testing.assert_array_equal(row["features"], records[2].features)
    dataset = store.dataset
    assert len(dataset) == 7 and dataset[6]["image_id"] == "image-6"


def test_errors(records, tmp_path):
    with pytest.raises(ValueError, match="is not a region store"):
        RegionStore.load(tmp_path)
    store = RegionStore.from_records(records, tmp_path / "store")
    with pytest.raises(IndexError, match="out of range"):
        store[7]
    with pytest.raises(KeyError, match="no image with id 'nope'"):
        store["nope"]
    with pytest.raises(ValueError, match="not empty"):
        RegionStore.from_records(records, tmp_path / "store")
    RegionStore.from_records(records[:2], tmp_path / "store", overwrite=True)
    assert len(RegionStore.load(tmp_path / "store")) == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        ("duplicate", "Image id 'image-1' is already in the region store"),
        ("score", r"RegionFeatures\(image_id='image-3'\): `scores` \[0\] = 1.5"),
        ("width", "has width 4, expected feature_dim=8"),
        ("overflow", "overflow float16"),
    ],
)
def test_failed_write_leaves_nothing(records, tmp_path, bad, message):
    broken = make_record(3, 2)
    if bad == "duplicate":
        broken = make_record(1, 2)
    elif bad == "score":
        broken.scores[0] = 1.5
    elif bad == "width":
        broken = make_record(3, 2, feature_dim=4)
    else:
        broken.features[1, 1] = 1e6
    with pytest.raises(ValueError, match=message):
        RegionStore.from_records(records[:3] + [broken], tmp_path / "store", shard_size=1)
    assert os.listdir(tmp_path) == []


def test_interrupted_write_leaves_nothing(records, tmp_path):
    def interrupted():
        yield from records[:4]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        RegionStore.from_records(interrupted(), tmp_path / "store", shard_size=2)
    assert os.listdir(tmp_path) == []


def test_empty_store(tmp_path):
    store = RegionStore.from_records([], tmp_path / "store", feature_dim=16)
    assert len(store) == 0 and list(store) == [] and store.feature_dim == 16
    assert len(store.dataset) == 0
    with pytest.raises(ValueError, match="pass feature_dim"):
        RegionStore.from_records([], tmp_path / "other")
    assert sorted(os.listdir(tmp_path)) == ["store"]


def test_writer_appends_and_resumes(records, tmp_path):
    path = tmp_path / "store"
    with RegionStoreWriter(path, feature_dim=FEATURE_DIM, shard_size=2) as writer:
        for record in records[:3]:
            writer.add(record)
    assert len(RegionStore.load(path)) == 3

    with RegionStoreWriter(path, shard_size=2) as writer:
        assert "image-0" in writer and "image-3" not in writer and len(writer) == 3
        with pytest.raises(ValueError, match="already in the region store"):
            writer.add(records[0])
        for record in records[3:]:
            writer.add(record)
    store = RegionStore.load(path)
    assert store.image_ids == [record.image_id for record in records]
    for actual, expected in zip(store, records, strict=True):
        assert_same_record(actual, expected, feature_dtype=np.float16)

    with pytest.raises(ValueError, match="has feature_dim=8, but feature_dim=16 was asked for"):
        RegionStoreWriter(path, feature_dim=16)
    with pytest.raises(ValueError, match="has feature_dtype='float16'"):
        RegionStoreWriter(path, feature_dtype="float32")


def test_writer_commits_buffer_on_error_and_cleans_up_leftovers(records, tmp_path):
    path = tmp_path / "store"
    with pytest.raises(RuntimeError, match="stop"):
        with RegionStoreWriter(path, feature_dim=FEATURE_DIM, shard_size=100) as writer:
            writer.add(records[0])
            writer.add(records[1])
            raise RuntimeError("stop")
    assert RegionStore.load(path).image_ids == ["image-0", "image-1"]

    # What a killed writer leaves: a renamed but uncommitted shard and a temporary folder.
    (path / "shard-00007").mkdir()
    (path / ".tmp-shard-00001-x").mkdir()
    with RegionStoreWriter(path) as writer:
        writer.add(records[2])
    assert sorted(os.listdir(path)) == [REGION_STORE_CONFIG_NAME, "shard-00000", "shard-00001"]
    assert RegionStore.load(path).image_ids == ["image-0", "image-1", "image-2"]

    with pytest.raises(ValueError, match="exists and is not a region store"):
        RegionStoreWriter(tmp_path)  # a non-empty folder that is not a store


def test_patch_gallery_from_store(records, tmp_path):
    store = RegionStore.from_records(
        records, tmp_path / "store", feature_dtype="float32", detector="test-det"
    )

    gallery = PatchGallery.build(store, feature_dtype="float32", show_progress=False)
    assert gallery.num_patches == store.num_regions == 15
    assert gallery.image_ids == store.image_ids
    np.testing.assert_array_equal(gallery.get_features([0, 1, 2]).numpy(), records[0].features)

    saved = build_gallery(
        tmp_path / "store", tmp_path / "gallery", feature_dtype="float32", show_progress=False
    )
    assert saved.num_patches == 15 and saved.detector == "test-det"
    with pytest.raises(ValueError, match="not empty"):
        build_gallery(store, tmp_path / "gallery", show_progress=False)


def test_build_gallery_command(records, tmp_path, capsys):
    RegionStore.from_records(records, tmp_path / "store")
    vlmixer(
        [
            "build-gallery",
            "--store",
            str(tmp_path / "store"),
            "--output",
            str(tmp_path / "gallery"),
            "--min-score",
            "0.5",
        ]
    )
    assert "wrote a patch gallery of" in capsys.readouterr().out
    gallery = PatchGallery.from_pretrained(tmp_path / "gallery")
    expected = sum(int((record.scores >= 0.5).sum()) for record in records)
    assert gallery.num_patches == expected and gallery.min_score == 0.5
