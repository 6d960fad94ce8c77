"""Tests of the region-feature readers (`processing.readers`) and `vlmixer convert-features`.

Every format is written here as a small fixture and read back into a region store.
"""

import base64
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conversion.convert_features_to_region_store import convert_features, make_reader
from modeling_vlmixer.cli import main as vlmixer
from processing.readers import ButdTSVReader, NpzFolderReader, SkippedRow, VinVLTSVReader
from processing.region_store import RegionStore


VOCAB = ["person", "dog", "traffic light", "stop sign"]


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def make_image(
    image_id: str, num_regions: int, feature_dim: int, seed: int, width: int = 640, height: int = 480
):
    """Ground truth of one image: float32 features, pixel boxes, labels (vocabulary ids), scores."""
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, [width / 2, height / 2], size=(num_regions, 2))
    sizes = rng.uniform(5, [width / 2, height / 2], size=(num_regions, 2))
    return {
        "image_id": image_id,
        "width": width,
        "height": height,
        "features": rng.standard_normal((num_regions, feature_dim)).astype(np.float32),
        "boxes": np.concatenate([corners, corners + sizes], axis=1).astype(np.float32),
        "class_ids": rng.integers(0, len(VOCAB), size=num_regions),
        "scores": rng.uniform(0.1, 1.0, size=num_regions).astype(np.float32),
    }


def assert_store_matches(
    store: RegionStore, images: list[dict], labels_of=lambda ids: [VOCAB[i] for i in ids]
):
    assert store.image_ids == [image["image_id"] for image in images]
    for record, image in zip(store, images, strict=True):
        np.testing.assert_array_equal(record.features, image["features"])
        np.testing.assert_array_equal(record.boxes, image["boxes"])
        np.testing.assert_array_equal(record.scores, image["scores"])
        assert record.labels == labels_of(image["class_ids"])
        assert (record.image_width, record.image_height) == (image["width"], image["height"])


def assert_nothing_written(folder: Path, inputs: set[str]) -> None:
    """Only the input files are in `folder`: no store, no temporary leftovers."""
    assert set(os.listdir(folder)) == inputs


# ------------------------------------------------------------------------------------------------------ VinVL


def vinvl_features_line(image: dict, box_width: int = 6) -> str:
    scale = np.array([image["width"], image["height"]] * 2, dtype=np.float64)
    normalized = image["boxes"] / scale
    six = np.concatenate(
        [normalized, normalized[:, 2:3] - normalized[:, 0:1], normalized[:, 3:4] - normalized[:, 1:2]], 1
    )
    rows = np.concatenate([image["features"], six[:, :box_width]], axis=1).astype(np.float32)
    return f"{image['image_id']}\t{len(rows)}\t{b64(rows)}\n"


def vinvl_predictions_line(image: dict, drop: str | None = None) -> str:
    objects = [
        {"class": VOCAB[class_id], "rect": [float(v) for v in box], "conf": float(score)}
        for class_id, box, score in zip(image["class_ids"], image["boxes"], image["scores"], strict=True)
    ]
    predictions = {"objects": objects, "image_h": image["height"], "image_w": image["width"]}
    predictions.pop(drop, None)
    return f"{image['image_id']}\t{json.dumps(predictions)}\n"


@pytest.fixture
def vinvl_images():
    # Real VinVL width: 2048 features + 6 box values per row. An image without regions in the middle.
    return [
        make_image("COCO_val2014_000000000042", 3, 2048, seed=1),
        make_image("COCO_val2014_000000000073", 0, 2048, seed=2, width=500, height=375),
        make_image("COCO_val2014_000000000074", 2, 2048, seed=3, width=427, height=640),
    ]


def write_vinvl(folder: Path, images: list[dict], features_lines=None, predictions_lines=None):
    features = folder / "features.tsv"
    predictions = folder / "predictions.tsv"
    features.write_text("".join(features_lines or [vinvl_features_line(image) for image in images]))
    # Predictions in another order, with an image the features file does not have.
    extra = make_image("unused", 1, 4, seed=9)
    lines = predictions_lines or [vinvl_predictions_line(image) for image in reversed(images)]
    predictions.write_text("".join(lines) + vinvl_predictions_line(extra))
    return features, predictions


def test_vinvl_round_trip_splits_2054_wide_rows(vinvl_images, tmp_path):
    features, predictions = write_vinvl(tmp_path, vinvl_images)
    reader = VinVLTSVReader(features, predictions)
    store = convert_features(reader, tmp_path / "store", feature_dtype="float32")

    assert store.feature_dim == 2048 and store.detector == "vinvl-x152c4"
    assert store.num_regions == 5 and reader.num_read == 3 and reader.skipped == []
    assert_store_matches(store, vinvl_images)


@pytest.mark.parametrize(
    "corruption, line, message",
    [
        ("bad base64", 2, "`features` is not valid base64"),
        (
            "wrong width",
            2,
            r"holds 6159 float32 values \(2053 per region\); expected num_boxes x width = 3 x 2054",
        ),
        ("truncated row", 2, r"has 2 tab-separated field\(s\), expected 3"),
        ("truncated base64", 3, "`features`"),
        ("missing image size", 3, r"predictions \(.*predictions.tsv, line 1\) have no `image_h`"),
        (
            "duplicate id",
            3,
            r"image id 'COCO_val2014_000000000042' repeats \(first read at .*features.tsv, line 1\)",
        ),
        ("box mismatch", 1, "region 1: the normalized box .* disagrees with rect"),
        ("objects count", 1, "num_boxes is 3 but its predictions .* list 2 objects"),
        ("no predictions", 2, "has no line in"),
    ],
)
def test_vinvl_corrupt_rows(vinvl_images, tmp_path, corruption, line, message):
    features_lines = [vinvl_features_line(image) for image in vinvl_images]
    predictions_lines = [vinvl_predictions_line(image) for image in reversed(vinvl_images)]
    if corruption == "bad base64":
        features_lines[1] = "COCO_val2014_000000000073\t3\t@@not-base64@@\n"
        vinvl_images[1] = make_image("COCO_val2014_000000000073", 3, 2048, seed=2)
    elif corruption == "wrong width":
        image = make_image("COCO_val2014_000000000073", 3, 2047, seed=2)
        features_lines[1] = vinvl_features_line(image)
    elif corruption == "truncated row":
        features_lines[1] = "COCO_val2014_000000000073\t0\n"
    elif corruption == "truncated base64":
        features_lines[2] = features_lines[2][: len(features_lines[2]) // 2] + "\n"
    elif corruption == "missing image size":
        predictions_lines[0] = vinvl_predictions_line(vinvl_images[2], drop="image_h")
    elif corruption == "duplicate id":
        features_lines[2] = vinvl_features_line(vinvl_images[0])
    elif corruption == "box mismatch":
        moved = dict(vinvl_images[0], boxes=vinvl_images[0]["boxes"] + np.array([0, 0, 0, 0], np.float32))
        moved["boxes"][1] += 40  # 40 px on a 640 x 480 image is far more than the 0.01 tolerance
        predictions_lines[2] = vinvl_predictions_line(moved)
    elif corruption == "objects count":
        fewer = {
            key: (value[:2] if isinstance(value, np.ndarray) else value)
            for key, value in vinvl_images[0].items()
        }
        predictions_lines[2] = vinvl_predictions_line(fewer)
    elif corruption == "no predictions":
        del predictions_lines[1]
    features, predictions = write_vinvl(tmp_path, vinvl_images, features_lines, predictions_lines)

    with pytest.raises(ValueError, match=rf"{features}, line {line}: .*{message}"):
        convert_features(VinVLTSVReader(features, predictions), tmp_path / "store")
    assert_nothing_written(tmp_path, {"features.tsv", "predictions.tsv"})


def test_vinvl_duplicate_predictions_name_the_predictions_file(vinvl_images, tmp_path):
    lines = [vinvl_predictions_line(image) for image in vinvl_images]
    features, predictions = write_vinvl(tmp_path, vinvl_images, predictions_lines=lines + lines[:1])
    with pytest.raises(
        ValueError, match=rf"{predictions}, line 4: image id '\S+42' repeats \(first at line 1\)"
    ):
        convert_features(VinVLTSVReader(features, predictions), tmp_path / "store")
    assert_nothing_written(tmp_path, {"features.tsv", "predictions.tsv"})


def test_vinvl_skip_bad_rows(tmp_path):
    images = [make_image(f"img{i}", 1 + i % 3, 16, seed=i) for i in range(5)]
    features_lines = [vinvl_features_line(image) for image in images]
    features_lines[1] = "img1\t1\tAAAA!\n"
    features_lines[3] = features_lines[3][:40] + "\n"
    features, predictions = write_vinvl(tmp_path, images, features_lines)

    reader = VinVLTSVReader(features, predictions, feature_dim=16, skip_bad_rows=True)
    store = convert_features(reader, tmp_path / "store", feature_dtype="float32")
    assert_store_matches(store, [images[0], images[2], images[4]])
    assert [(row.path, row.line) for row in reader.skipped] == [(str(features), 2), (str(features), 4)]
    assert "not valid base64" in reader.skipped[0].reason
    assert str(reader.skipped[0]).startswith(f"{features}, line 2: ")


# ------------------------------------------------------------------------------------------------ BUTD / LXMERT


def butd_line(image: dict, **overrides) -> str:
    num_boxes = len(image["boxes"])
    fields = {
        "img_id": image["image_id"],
        "img_h": str(image["height"]),
        "img_w": str(image["width"]),
        "objects_id": b64(image["class_ids"].astype(np.int64)),
        "objects_conf": b64(image["scores"]),
        "attrs_id": b64(np.zeros(num_boxes, np.int64)),
        "attrs_conf": b64(np.zeros(num_boxes, np.float32)),
        "num_boxes": str(num_boxes),
        "boxes": b64(image["boxes"]),
        "features": b64(image["features"]),
    }
    fields.update(overrides)
    return "\t".join(fields.values()) + "\n"


@pytest.fixture
def butd_images():
    return [make_image(f"{i}", n, 32, seed=10 + i) for i, n in enumerate([36, 10, 1, 5])]


def test_butd_round_trip(butd_images, tmp_path):
    path = tmp_path / "train_obj36.tsv"
    path.write_text("".join(butd_line(image) for image in butd_images))
    vocab = tmp_path / "objects_vocab.txt"
    vocab.write_text("person\ndog,doggy\ntraffic light\nstop sign,stopsign\n")

    store = convert_features(
        ButdTSVReader(path, objects_vocab=vocab), tmp_path / "store", feature_dtype="float32"
    )
    assert store.feature_dim == 32 and store.num_regions == 52
    assert_store_matches(store, butd_images)

    # Without a vocabulary the labels are the class ids; a header line is skipped.
    path.write_text(
        "\t".join(
            (
                "img_id",
                "img_h",
                "img_w",
                "objects_id",
                "objects_conf",
                "attrs_id",
                "attrs_conf",
                "num_boxes",
                "boxes",
                "features",
            )
        )
        + "\n"
        + butd_line(butd_images[2])
    )
    store = RegionStore.from_records(ButdTSVReader(path), tmp_path / "ids", feature_dtype="float32")
    assert_store_matches(store, butd_images[2:3], labels_of=lambda ids: [str(i) for i in ids])


@pytest.mark.parametrize(
    "corruption, message",
    [
        ("bad base64", "`boxes` is not valid base64"),
        (
            "wrong width",
            r"`features` holds 310 float32 values \(31 per region\); expected num_boxes x width = 10 x 32",
        ),
        ("truncated row", r"has 8 tab-separated field\(s\), expected 10"),
        ("truncated features", "`features` decodes to .* bytes, not a whole number of float32 values"),
        ("missing image size", "`img_h` is missing; expected an integer >= 1"),
        ("duplicate id", r"image id '0' repeats \(first read at .*, line 1\)"),
        ("unknown class", r"`objects_id` 7 is outside the objects vocabulary \(classes 0..3\)"),
        ("scores count", "`objects_conf` holds 9 values; expected num_boxes=10"),
        ("box outside image", "`boxes` .* lies outside the 640x480 image"),
    ],
)
def test_butd_corrupt_rows(butd_images, tmp_path, corruption, message):
    image = butd_images[1]
    line = {
        "bad base64": lambda: butd_line(image, boxes="not*base64"),
        "wrong width": lambda: butd_line(image, features=b64(image["features"][:, :31])),
        "truncated row": lambda: "\t".join(butd_line(image).split("\t")[:8]) + "\n",
        "truncated features": lambda: butd_line(image, features=b64(image["features"])[:-8]),
        "missing image size": lambda: butd_line(image, img_h=""),
        "duplicate id": lambda: butd_line(butd_images[0]),
        "unknown class": lambda: butd_line(image, objects_id=b64(np.full(10, 7, np.int64))),
        "scores count": lambda: butd_line(image, objects_conf=b64(image["scores"][:9])),
        "box outside image": lambda: butd_line(image, boxes=b64(image["boxes"] + np.float32(1000))),
    }[corruption]()
    path = tmp_path / "obj36.tsv"
    path.write_text(butd_line(butd_images[0]) + line + butd_line(butd_images[2]))

    with pytest.raises(ValueError, match=rf"{path}, line 2: .*{message}"):
        convert_features(ButdTSVReader(path, objects_vocab=VOCAB), tmp_path / "store")
    assert_nothing_written(tmp_path, {"obj36.tsv"})

    reader = ButdTSVReader(path, objects_vocab=VOCAB, skip_bad_rows=True)
    store = convert_features(reader, tmp_path / "store", feature_dtype="float32")
    assert store.image_ids == ["0", "2"]
    assert reader.skipped == [SkippedRow(str(path), 2, reader.skipped[0].reason)]


# ------------------------------------------------------------------------------------------------------- .npz


def write_npz(folder: Path, image: dict, **overrides) -> Path:
    arrays = {
        "features": image["features"],
        "boxes": image["boxes"],
        "labels": np.array([VOCAB[i] for i in image["class_ids"]], dtype=str),
        "scores": image["scores"],
        "image_h": np.int64(image["height"]),
        "image_w": np.int64(image["width"]),
    }
    arrays.update(overrides)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    path = folder / f"{image['image_id']}.npz"
    np.savez(path, **arrays)
    return path


def test_npz_round_trip(tmp_path):
    folder = tmp_path / "regions"
    folder.mkdir()
    images = [make_image(f"img{i}", n, 24, seed=20 + i) for i, n in enumerate([4, 0, 7])]
    for image in images[:2]:
        write_npz(folder, image)
    # Optional keys: an explicit image id (instead of the file name) and the image path.
    images[2]["image_id"] = "COCO 3"
    write_npz(
        folder, dict(images[2], image_id="img2"), image_id=np.array("COCO 3"), image_path=np.array("/x/3.jpg")
    )
    (folder / "notes.txt").write_text("not an npz")

    store = convert_features(NpzFolderReader(folder), tmp_path / "store", feature_dtype="float32")
    assert_store_matches(store, images)
    assert store["COCO 3"].image_path == "/x/3.jpg" and store[0].image_path is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"scores": None}, r"is missing the key\(s\) \['scores'\]"),
        ({"image_h": None}, r"is missing the key\(s\) \['image_h'\]"),
        ({"labels": np.array(["dog", None] * 5, dtype=object)}, "cannot be read without pickle"),
        ({"image_w": np.float64(12.5)}, "`image_w` is 12.5; expected an integer number of pixels"),
        ({"features": np.zeros((10, 23), np.float32)}, "has width 23, expected feature_dim=24"),
        ({"image_id": np.array("img0")}, r"image id 'img0' repeats"),
        ("not a zip", "is not a readable .npz file"),
    ],
)
def test_npz_corrupt_files(tmp_path, overrides, message):
    folder = tmp_path / "regions"
    folder.mkdir()
    write_npz(folder, make_image("img0", 3, 24, seed=0))
    bad_image = make_image("img1", 10, 24, seed=1)
    if overrides == "not a zip":
        bad = folder / "img1.npz"
        bad.write_bytes(b"PK\x03\x04 truncated")
    else:
        bad = write_npz(folder, bad_image, **overrides)
    write_npz(folder, make_image("img2", 2, 24, seed=2))

    with pytest.raises(ValueError, match=rf"{bad}: .*{message}"):
        convert_features(NpzFolderReader(folder), tmp_path / "store")
    assert_nothing_written(tmp_path, {"regions"})

    reader = NpzFolderReader(folder, skip_bad_rows=True)
    store = convert_features(reader, tmp_path / "store")
    assert store.image_ids == ["img0", "img2"]
    assert [(row.path, row.line) for row in reader.skipped] == [(str(bad), None)]


# -------------------------------------------------------------------------------------- vlmixer convert-features


def test_convert_features_command(butd_images, tmp_path, capsys):
    path = tmp_path / "obj36.tsv"
    path.write_text(butd_line(butd_images[0]) + "broken\trow\n" + butd_line(butd_images[1]))
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    args = [
        "convert-features",
        "--format",
        "butd",
        "--features",
        str(path),
        "--objects-vocab",
        str(vocab),
        "--output",
        str(tmp_path / "store"),
        "--feature-dtype",
        "float32",
    ]

    with pytest.raises(ValueError, match=rf"{path}, line 2: has 2 tab-separated field\(s\), expected 10"):
        vlmixer(args)
    assert not (tmp_path / "store").exists()

    vlmixer(args + ["--skip-bad-rows"])
    out = capsys.readouterr().out
    assert "wrote 2 images, 46 regions (32-d float32)" in out
    assert f"skipped 1 bad row(s):\n  {path}, line 2: has 2 tab-separated field(s)" in out
    assert_store_matches(RegionStore.load(tmp_path / "store"), butd_images[:2])

    with pytest.raises(SystemExit):
        vlmixer(
            [
                "convert-features",
                "--format",
                "vinvl",
                "--features",
                str(path),
                "--output",
                str(tmp_path / "x"),
            ]
        )
    with pytest.raises(ValueError, match="only read for --format vinvl"):
        make_reader("npz", tmp_path, predictions="p.tsv")
