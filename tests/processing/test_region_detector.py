"""Tests of the torchvision region extractor (`processing.region_detector`), on real photos of scikit-image.

The detector is a `fasterrcnn_mobilenet_v3_large_320_fpn` with random weights, images resized to 128-160
pixels and 4 detections per image, so that every test runs in about a second on a CPU.
"""

import numpy as np
import pytest
import torch


pytest.importorskip("torchvision")
skimage_data = pytest.importorskip("skimage.data")
Image = pytest.importorskip("PIL.Image")

from modeling_vlmixer.cli import main as vlmixer  # noqa: E402
from processing.region_detector import (  # noqa: E402
    RegionDetector,
    coco_category_names,
    extract_features,
    list_images,
    load_rgb_image,
)
from processing.region_store import RegionStore  # noqa: E402


# Few proposals per image: the box head on the proposals is most of the cost.
DETECTOR_KWARGS = dict(
    min_size=128,
    max_size=160,
    box_score_thresh=0.0,
    box_detections_per_img=4,
    rpn_pre_nms_top_n_test=60,
    rpn_post_nms_top_n_test=20,
)
ARCHITECTURE = "fasterrcnn_mobilenet_v3_large_320_fpn"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads contend and make each call 5-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four photos: RGB JPEG/PNG, a grayscale PNG and an RGBA PNG (both must be read as RGB)."""
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.astronaut()).save(folder / "astronaut.jpg")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.png")
    (folder / "cats").mkdir()
    Image.fromarray(skimage_data.chelsea()).convert("RGBA").save(folder / "cats" / "chelsea.png")
    Image.fromarray(skimage_data.camera()).save(folder / "camera.png")  # grayscale, mode "L"
    (folder / "README.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def detector():
    return RegionDetector.from_torchvision(ARCHITECTURE, random_weights=True, **DETECTOR_KWARGS)


class CountingDetector:
    """Wraps a detector and counts its calls and the images it saw."""

    def __init__(self, detector):
        self.detector = detector
        self.calls = 0
        self.images = []
        self.feature_dim = detector.feature_dim
        self.name = detector.name

    def detect(self, images, image_ids, image_paths=None):
        self.calls += 1
        self.images += list(image_ids)
        return self.detector.detect(images, image_ids, image_paths)


def test_list_images_and_rgb_loading(photos):
    images = list_images(photos)
    assert [image_id for image_id, _ in images] == ["astronaut", "camera", "cats/chelsea", "coffee"]
    camera = load_rgb_image(photos / "camera.png")
    assert camera.shape == (512, 512, 3) and camera.dtype == np.uint8
    assert (camera[..., 0] == camera[..., 2]).all()  # gray replicated over the 3 channels
    assert load_rgb_image(photos / "cats" / "chelsea.png").shape == (300, 451, 3)
    with pytest.raises(ValueError, match="Cannot read the image .*README.txt"):
        load_rgb_image(photos / "README.txt")


def test_extract_features_writes_a_valid_store(photos, detector, tmp_path):
    report = extract_features(photos, tmp_path / "store", detector, batch_size=3, show_progress=False)

    assert (report.num_extracted, report.num_existing, report.num_remaining) == (4, 0, 0)
    store = RegionStore.load(tmp_path / "store")
    assert store.feature_dim == detector.feature_dim == 1024
    assert store.detector == f"{ARCHITECTURE}-random-seed0"
    assert store.image_ids == ["astronaut", "camera", "cats/chelsea", "coffee"]
    sizes = {"astronaut": (512, 512), "camera": (512, 512), "cats/chelsea": (451, 300), "coffee": (600, 400)}
    coco_names = set(coco_category_names())
    for record in store:
        record.validate(expected_feature_dim=1024)
        assert (record.image_width, record.image_height) == sizes[record.image_id]
        assert 1 <= record.num_regions <= 4
        assert set(record.labels) <= coco_names
        assert record.image_path == str(
            photos / f"{record.image_id}{'.jpg' if record.image_id == 'astronaut' else '.png'}"
        )
        assert np.abs(record.features).sum() > 0
        assert (np.diff(record.scores) <= 0).all()  # most confident first


def test_detect_is_deterministic_and_batch_independent(photos, detector):
    images = [load_rgb_image(photos / "astronaut.jpg"), load_rgb_image(photos / "coffee.png")]
    batched = detector.detect(images, ["a", "c"])
    single = detector.detect(images[1:], ["c"])
    np.testing.assert_allclose(batched[1].boxes, single[0].boxes, atol=1e-3)
    np.testing.assert_allclose(batched[1].features, single[0].features, atol=1e-4)
    # The features are the box head applied to the final boxes, pooled again.
    assert batched[0].features.shape == (len(batched[0].boxes), 1024)


def test_resume_after_max_images_never_redoes_work(photos, detector, tmp_path):
    counting = CountingDetector(detector)
    first = extract_features(
        photos, tmp_path / "store", counting, batch_size=2, max_images=2, show_progress=False
    )
    assert (first.num_extracted, first.num_remaining, counting.calls) == (2, 2, 1)
    assert len(RegionStore.load(tmp_path / "store")) == 2

    second = extract_features(photos, tmp_path / "store", counting, batch_size=2, show_progress=False)
    assert (second.num_existing, second.num_extracted, counting.calls) == (2, 2, 2)
    third = extract_features(photos, tmp_path / "store", counting, batch_size=2, show_progress=False)
    assert (third.num_existing, third.num_extracted, counting.calls) == (4, 0, 2)

    assert sorted(counting.images) == ["astronaut", "camera", "cats/chelsea", "coffee"]  # each image once
    store = RegionStore.load(tmp_path / "store")
    assert sorted(store.image_ids) == sorted(counting.images) and store.num_shards == 2


def test_resume_after_an_exception(photos, detector, tmp_path):
    counting = CountingDetector(detector)

    def crash_after_first_batch(batch_index, records):
        assert [record.image_id for record in records] == ["astronaut", "camera"]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(
            photos,
            tmp_path / "store",
            counting,
            batch_size=2,
            shard_size=100,
            on_batch_end=crash_after_first_batch,
            show_progress=False,
        )
    # The completed batch was committed although its shard was not full.
    assert RegionStore.load(tmp_path / "store").image_ids == ["astronaut", "camera"]
    assert counting.calls == 1

    report = extract_features(photos, tmp_path / "store", counting, batch_size=2, show_progress=False)
    assert (report.num_existing, report.num_extracted, counting.calls) == (2, 2, 2)
    assert counting.images == ["astronaut", "camera", "cats/chelsea", "coffee"]
    assert RegionStore.load(tmp_path / "store").image_ids == counting.images


def test_bad_images(photos, detector, tmp_path):
    images = list_images(photos) + [("broken", str(photos / "README.txt"))]
    with pytest.raises(ValueError, match="Cannot read the image .*README.txt"):
        extract_features(images, tmp_path / "store", detector, batch_size=8, show_progress=False)
    report = extract_features(
        images, tmp_path / "store", detector, batch_size=8, skip_bad_images=True, show_progress=False
    )
    assert report.num_extracted == 4 and [path for path, _ in report.bad_images] == [
        str(photos / "README.txt")
    ]


def test_weights_from_a_local_file(photos, detector, tmp_path):
    path = tmp_path / "detector.pth"
    torch.save({"model": detector.model.state_dict(), "epoch": 3}, path)  # a torchvision training checkpoint
    loaded = RegionDetector.from_torchvision(ARCHITECTURE, weights=path, **DETECTOR_KWARGS)
    assert loaded.name == f"{ARCHITECTURE}-detector"
    image = [load_rgb_image(photos / "coffee.png")]
    expected, actual = detector.detect(image, ["c"])[0], loaded.detect(image, ["c"])[0]
    np.testing.assert_array_equal(actual.features, expected.features)
    assert actual.labels == expected.labels

    with pytest.raises(ValueError, match="Give exactly one of weights"):
        RegionDetector.from_torchvision(ARCHITECTURE)
    with pytest.raises(ValueError, match="Give exactly one of weights"):
        RegionDetector.from_torchvision(ARCHITECTURE, weights=path, random_weights=True)
    with pytest.raises(ValueError, match="do not exist"):
        RegionDetector.from_torchvision(ARCHITECTURE, weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="91 classes but 3 label names"):
        RegionDetector.from_torchvision(ARCHITECTURE, weights=path, label_names=["bg", "a", "b"])
    with pytest.raises(ValueError, match="Unknown detector architecture"):
        RegionDetector.from_torchvision("yolo", random_weights=True)


def test_extract_features_command(photos, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["__background__", "person", "dog", "cat"]) + "\n")
    args = [
        "extract-features",
        "--images",
        str(photos),
        "--output",
        str(tmp_path / "store"),
        "--random-weights",
        "--architecture",
        ARCHITECTURE,
        "--labels",
        str(labels),
        "--min-size",
        "128",
        "--max-size",
        "160",
        "--score-threshold",
        "0",
        "--max-detections",
        "3",
        "--num-proposals",
        "20",
        "--batch-size",
        "4",
        "--feature-dtype",
        "float32",
    ]
    vlmixer(args + ["--max-images", "1"])
    assert "extracted 1 new images (0 already stored, 3 remaining)" in capsys.readouterr().out
    vlmixer(args)
    assert "extracted 3 new images (1 already stored, 0 remaining); the store" in capsys.readouterr().out
    store = RegionStore.load(tmp_path / "store")
    assert len(store) == 4 and store.feature_dtype == "float32"
    assert {label for record in store for label in record.labels} <= {"person", "dog", "cat"}
