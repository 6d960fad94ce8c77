"""Tests of the easy-VQA shape detector (`processing.shape_detector`), on real easy-VQA images."""

import re

import numpy as np
import pytest


pytest.importorskip("scipy.ndimage")
easy_vqa = pytest.importorskip("easy_vqa")
from PIL import Image, ImageDraw  # noqa: E402

from processing.easy_vqa import load_easy_vqa, store_image_id  # noqa: E402
from processing.region_detector import load_rgb_image  # noqa: E402
from processing.region_store import RegionStore  # noqa: E402
from processing.shape_detector import (  # noqa: E402
    DETECTOR_NAME,
    FEATURE_DIM,
    FEATURE_LAYOUT,
    PALETTE,
    SHAPES,
    ShapeDetector,
    detect_to_store,
)


NUM_IMAGES = 200
COLOR_WORDS = tuple(PALETTE)


@pytest.fixture(scope="module")
def train():
    return load_easy_vqa("train")


@pytest.fixture(scope="module")
def detections(train):
    """Detections of the first `NUM_IMAGES` train images, `{image_id: (pixels, record)}`."""
    _, image_paths = train
    detector = ShapeDetector()
    result = {}
    for image_id in range(NUM_IMAGES):
        pixels = load_rgb_image(image_paths[image_id])
        result[image_id] = (pixels, detector.detect(pixels, store_image_id("train", image_id)))
    return result


def answer_from_detection(question: str, shape: str, color: str) -> str:
    """Answers an easy-VQA question from the detected shape and colour (its 24 templates)."""
    words = re.findall(r"[a-z]+", question.lower())
    if question.startswith(("what color", "what is the color")):
        return color
    if question.startswith(("what shape", "what is the")):
        return shape
    mentioned = [word for word in words if word in SHAPES + COLOR_WORDS]
    assert len(mentioned) == 1, question
    present = mentioned[0] in (shape, color)
    negated = "not" in words or "no" in words
    return "yes" if present != negated else "no"


def test_labels_match_the_answers_of_real_questions(train, detections):
    questions, _ = train
    asked = [q for q in questions if q.image_id in detections]
    counts = {"shape": [0, 0], "color": [0, 0], "yes/no": [0, 0]}
    for question in asked:
        record = detections[question.image_id][1]
        shape, color = record.labels
        predicted = answer_from_detection(question.question, shape, color)
        kind = (
            "shape" if question.answer in SHAPES else "color" if question.answer in COLOR_WORDS else "yes/no"
        )
        counts[kind][0] += predicted == question.answer
        counts[kind][1] += 1
    accuracy = {kind: correct / total for kind, (correct, total) in counts.items()}
    print(f"accuracy on {NUM_IMAGES} images: {accuracy} (questions: {counts})")
    assert min(total for _, total in counts.values()) > 50
    assert accuracy["shape"] == 1.0 and accuracy["color"] == 1.0 and accuracy["yes/no"] == 1.0


def test_records_boxes_and_scores(detections):
    for pixels, record in detections.values():
        record.validate(expected_feature_dim=FEATURE_DIM)
        height, width = pixels.shape[:2]
        assert (record.image_width, record.image_height) == (width, height) == (64, 64)
        assert record.num_regions == 2
        assert record.labels[0] in SHAPES and record.labels[1] in PALETTE
        np.testing.assert_array_equal(record.boxes[0], record.boxes[1])
        assert record.features.dtype == np.float32 and record.features.shape == (2, FEATURE_DIM)
        assert ((record.scores >= 0.5) & (record.scores <= 1.0)).all()
        region_type = FEATURE_LAYOUT["region_type"]
        np.testing.assert_array_equal(record.features[:, region_type], [[1, 0], [0, 1]])
        np.testing.assert_array_equal(
            record.features[0, : region_type.start], record.features[1, : region_type.start]
        )
        assert record.features[0, FEATURE_LAYOUT["histogram"]].sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(
            record.features[0, FEATURE_LAYOUT["color"]] * 255, PALETTE[record.labels[1]], atol=1
        )

        # Inside the image, holding every clearly shape pixel, and tight: each side touches the shape.
        x1, y1, x2, y2 = record.boxes[0].astype(int)
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        background = np.median(np.concatenate([pixels[0], pixels[-1]]), axis=0)
        distance = np.linalg.norm(pixels.astype(np.float32) - background, axis=-1)
        strong = distance >= 0.75 * distance.max()
        assert strong[y1:y2, x1:x2].sum() == strong.sum()
        touched = distance >= 0.25 * distance.max()
        assert touched[y1, x1:x2].any() and touched[y2 - 1, x1:x2].any()
        assert touched[y1:y2, x1].any() and touched[y1:y2, x2 - 1].any()
        fill = record.features[0, FEATURE_LAYOUT["geometry"]][0]
        expected_fill = {"rectangle": (0.85, 1.0), "circle": (0.7, 0.92), "triangle": (0.45, 0.7)}
        low, high = expected_fill[record.labels[0]]
        assert low <= fill <= high, (record.image_id, record.labels, fill)


@pytest.mark.parametrize(
    "shape, points, color, expected_box",
    [
        ("rectangle", [(20, 10), (59, 29)], "teal", [20, 10, 60, 30]),
        ("circle", [(10, 30), (49, 69)], "brown", [10, 30, 50, 70]),
        ("triangle", [(60, 20), (90, 20), (75, 46)], "gray", [60, 20, 91, 47]),  # apex down
    ],
)
def test_drawn_shapes_on_another_image_size(shape, points, color, expected_box):
    image = Image.new("RGB", (100, 80), (240, 250, 235))
    draw = ImageDraw.Draw(image)
    fill = PALETTE[color]
    if shape == "rectangle":
        draw.rectangle(points, fill=fill)
    elif shape == "circle":
        draw.ellipse(points, fill=fill)
    else:
        draw.polygon(points, fill=fill)
    record = ShapeDetector().detect(image, "drawn", image_path="drawn.png")
    assert record.labels == [shape, color]
    assert (record.image_width, record.image_height) == (100, 80)
    assert record.image_path == "drawn.png"
    np.testing.assert_allclose(record.boxes[0], expected_box, atol=1)
    assert record.scores[1] == 1.0  # the exact palette colour


def test_no_shape_gives_zero_regions():
    record = ShapeDetector().detect(np.full((64, 64, 3), 240, dtype=np.uint8), "blank")
    assert record.num_regions == 0 and record.features.shape == (0, FEATURE_DIM)
    record.validate()
    faint = np.full((64, 64, 3), 240, dtype=np.uint8)
    faint[20:30, 20:30] = 230  # below min_contrast
    assert ShapeDetector().detect(faint, "faint").num_regions == 0


@pytest.mark.parametrize(
    "image, message",
    [
        (Image.new("L", (64, 64)), "RGB PIL image"),
        (Image.new("RGBA", (64, 64)), "RGB PIL image"),
        (np.zeros((64, 64, 3), dtype=np.float32), "uint8"),
        (np.zeros((64, 64), dtype=np.uint8), "uint8"),
        (np.zeros((64, 64, 4), dtype=np.uint8), "uint8"),
        (np.zeros((2, 64, 3), dtype=np.uint8), "at least 3 x 3"),
        ([[0, 0, 0]], "PIL image or a uint8"),
    ],
)
def test_bad_input(image, message):
    with pytest.raises(ValueError, match=message):
        ShapeDetector().detect(image, "bad")


def test_bad_arguments():
    with pytest.raises(ValueError, match="image_id"):
        ShapeDetector().detect(np.zeros((8, 8, 3), dtype=np.uint8), "")
    with pytest.raises(ValueError, match="min_contrast"):
        ShapeDetector(min_contrast=0)


def test_store_round_trip_and_resume(train, tmp_path):
    _, image_paths = train
    paths = {store_image_id("train", i): image_paths[i] for i in range(6)}
    store_path = tmp_path / "regions"
    first = dict(list(paths.items())[:4])
    report = detect_to_store(first, store_path, shard_size=3, show_progress=False)
    assert (report.num_extracted, report.num_existing) == (4, 0)
    report = detect_to_store(paths, store_path, shard_size=3, show_progress=False)
    assert (report.num_extracted, report.num_existing) == (2, 4)

    store = RegionStore.load(store_path)
    assert (
        store.detector == DETECTOR_NAME
        and store.feature_dim == FEATURE_DIM
        and store.feature_dtype == "float32"
    )
    assert sorted(store.image_ids) == sorted(paths)
    detector = ShapeDetector()
    for image_id, path in paths.items():
        expected = detector.detect(load_rgb_image(path), image_id)
        stored = store[image_id]
        np.testing.assert_array_equal(stored.features, expected.features)
        np.testing.assert_array_equal(stored.boxes, expected.boxes)
        np.testing.assert_array_equal(stored.scores, expected.scores)
        assert stored.labels == expected.labels
        assert stored.image_path == path


def test_store_bad_image(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Cannot read"):
        detect_to_store({"bad": str(bad)}, tmp_path / "store", show_progress=False)
    report = detect_to_store({"bad": str(bad)}, tmp_path / "store", skip_bad_images=True, show_progress=False)
    assert report.num_extracted == 0 and report.bad_images[0][0] == str(bad)
