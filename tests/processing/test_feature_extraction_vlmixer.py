"""Tests of `RegionFeatures` and `VLMixerRegionFeatureExtractor`."""

import json
import os

import numpy as np
import pytest
import torch
from transformers.feature_extraction_utils import BatchFeature

from processing.feature_extraction_vlmixer import RegionFeatures, VLMixerRegionFeatureExtractor


DIM = 6


def make_record(
    n=3,
    dim=DIM,
    width=200,
    height=100,
    scores=None,
    labels=None,
    boxes=None,
    image_id="img0",
    **overrides,
):
    """A small valid record; each region's features are filled with its index, so rows are traceable."""
    features = np.repeat(np.arange(n, dtype=np.float32)[:, None], dim, axis=1)
    if boxes is None:
        boxes = np.array(
            [[10.0 * i, 5.0 * i, 10.0 * i + 50.0, 5.0 * i + 40.0] for i in range(n)], dtype=np.float32
        )
    if scores is None:
        scores = np.linspace(0.9, 0.5, n, dtype=np.float32) if n else np.zeros((0,), np.float32)
    if labels is None:
        labels = [f"concept{i}" for i in range(n)]
    kwargs = dict(
        features=features,
        boxes=boxes,
        image_width=width,
        image_height=height,
        labels=labels,
        scores=scores,
        image_id=image_id,
    )
    kwargs.update(overrides)
    return RegionFeatures(**kwargs)


@pytest.fixture
def extractor():
    return VLMixerRegionFeatureExtractor(feature_dim=DIM, max_regions=10)


# ---------------------------------------------------------------------------------------------------------
# RegionFeatures


def test_record_stores_float32_numpy_from_torch_and_lists():
    record = RegionFeatures(
        features=torch.ones(2, DIM, dtype=torch.bfloat16),
        boxes=[[0, 0, 10, 10], [1, 2, 3, 4]],
        image_width=np.int64(20),
        image_height=20,
        labels=("a", "b"),
        scores=torch.tensor([0.5, 1.0], dtype=torch.float64),
        image_id="x",
    )
    assert isinstance(record.features, np.ndarray) and record.features.dtype == np.float32
    assert record.boxes.dtype == np.float32 and record.boxes.shape == (2, 4)
    assert record.scores.dtype == np.float32
    assert record.labels == ["a", "b"]
    assert type(record.image_width) is int
    assert record.image_path is None
    assert len(record) == 2
    record.validate(expected_feature_dim=DIM)


def test_record_does_not_alias_caller_boxes():
    boxes = np.array([[-0.5, 0.0, 200.5, 100.0]], dtype=np.float32)
    record = make_record(n=1, boxes=boxes)
    record.validate()
    np.testing.assert_array_equal(record.boxes, [[0.0, 0.0, 200.0, 100.0]])
    np.testing.assert_array_equal(boxes, [[-0.5, 0.0, 200.5, 100.0]])


def test_normalized_boxes_exact_values():
    record = make_record(
        n=2,
        width=200,
        height=100,
        boxes=np.array([[50.0, 25.0, 150.0, 100.0], [0.0, 0.0, 200.0, 50.0]]),
    )
    normalized = record.normalized_boxes()
    assert normalized.dtype == np.float32 and normalized.shape == (2, 4)
    np.testing.assert_array_equal(
        normalized, np.array([[0.25, 0.25, 0.75, 1.0], [0.0, 0.0, 1.0, 0.5]], np.float32)
    )


def test_boxes_within_tolerance_are_clipped():
    record = make_record(n=1, width=200, height=100, boxes=[[-1.0, -0.5, 201.0, 100.75]])
    record.validate()
    np.testing.assert_array_equal(record.boxes, [[0.0, 0.0, 200.0, 100.0]])
    np.testing.assert_array_equal(record.normalized_boxes(), [[0.0, 0.0, 1.0, 1.0]])


def test_empty_record_validates():
    record = RegionFeatures.empty("nothing", 64, 48, feature_dim=DIM, image_path="/tmp/x.jpg")
    record.validate(expected_feature_dim=DIM)
    assert record.features.shape == (0, DIM)
    assert record.normalized_boxes().shape == (0, 4)
    assert record.image_path == "/tmp/x.jpg"


def test_empty_box_list_gets_shape_n_by_4():
    record = make_record(n=0, boxes=[], labels=[], scores=[])
    assert record.boxes.shape == (0, 4)
    record.validate(expected_feature_dim=DIM)


def test_repr_is_short():
    text = repr(make_record(n=2, image_id="abc"))
    assert "abc" in text and "num_regions=2" in text and "\n" not in text


BAD_RECORDS = [
    (
        "features 1-D",
        dict(features=np.zeros(DIM)),
        r"image_id='img0'.*`features` must be 2-D with shape \(N, D\)",
    ),
    ("features 3-D", dict(features=np.zeros((3, DIM, 1))), r"`features` must be 2-D"),
    (
        "NaN feature",
        dict(features=np.where(np.eye(3, DIM) > 0, np.nan, 0.0)),
        r"`features` contains NaN or inf",
    ),
    ("inf feature", dict(features=np.full((3, DIM), np.inf)), r"`features` contains NaN or inf"),
    ("boxes (N, 5)", dict(boxes=np.zeros((3, 5))), r"`boxes` must have shape \(N, 4\).*got \(3, 5\)"),
    ("boxes 1-D", dict(boxes=np.zeros(12)), r"`boxes` must have shape \(N, 4\)"),
    (
        "NaN box",
        dict(boxes=np.array([[0, 0, 1, 1], [0, 0, np.nan, 1], [0, 0, 1, 1]], np.float32)),
        r"`boxes` contains NaN or inf",
    ),
    (
        "inf box",
        dict(boxes=np.array([[0, 0, 1, 1]] * 2 + [[0, 0, np.inf, 1]])),
        r"`boxes` contains NaN or inf",
    ),
    (
        "too few boxes",
        dict(boxes=np.zeros((2, 4))),
        r"disagree on the number of regions \(features=3, boxes=2",
    ),
    ("too few labels", dict(labels=["a", "b"]), r"disagree on the number of regions.*labels=2"),
    ("too many scores", dict(scores=np.full(4, 0.5)), r"disagree on the number of regions.*scores=4"),
    ("scores 2-D", dict(scores=np.full((3, 1), 0.5)), r"`scores` must be 1-D"),
    ("zero width", dict(image_width=0), r"`image_width` must be an int > 0 \(pixels\), got 0"),
    ("negative height", dict(image_height=-5), r"`image_height` must be an int > 0"),
    ("missing width", dict(image_width=None), r"`image_width` is missing"),
    ("missing height", dict(image_height=None), r"`image_height` is missing"),
    ("float width", dict(image_width=200.5), r"`image_width` must be an int > 0"),
    (
        "x2 < x1",
        dict(boxes=np.array([[0, 0, 10, 10], [30, 0, 20, 10], [0, 0, 10, 10]])),
        r"`boxes` \[1\] = \[30.0, 0.0, 20.0, 10.0\] is inverted; expected x1 <= x2 and y1 <= y2",
    ),
    (
        "y2 < y1",
        dict(boxes=np.array([[0, 0, 10, 10]] * 2 + [[0, 9, 10, 8]])),
        r"`boxes` \[2\] .* is inverted",
    ),
    (
        "box past right edge",
        dict(boxes=np.array([[0, 0, 10, 10]] * 2 + [[100, 0, 201.5, 10]])),
        r"`boxes` \[2\] .* lies outside the 200x100 image; expected pixel coordinates within \[0, 200\] x \[0, 100\]",
    ),
    (
        "box below bottom edge",
        dict(boxes=np.array([[0, 0, 10, 10]] * 2 + [[0, 50, 10, 102]])),
        r"`boxes` \[2\] .* lies outside the 200x100 image",
    ),
    (
        "negative box",
        dict(boxes=np.array([[-1.5, 0, 10, 10]] * 3)),
        r"`boxes` \[0\] .* lies outside the 200x100 image",
    ),
    ("score above 1", dict(scores=[0.5, 1.5, 0.2]), r"`scores` \[1\] = 1.5 is outside \[0, 1\]"),
    ("negative score", dict(scores=[0.5, 0.2, -0.1]), r"`scores` \[2\] = .* is outside \[0, 1\]"),
    ("NaN score", dict(scores=[np.nan, 0.2, 0.1]), r"`scores` \[0\] = nan is outside \[0, 1\]"),
    (
        "empty label",
        dict(labels=["dog", "", "cat"]),
        r"`labels` \[1\] is ''; expected a non-empty concept string",
    ),
    ("blank label", dict(labels=["dog", "cat", "  "]), r"`labels` \[2\] is '  '; expected a non-empty"),
    (
        "non-str label",
        dict(labels=["dog", 3, "cat"]),
        r"`labels` \[1\] is 3; expected a non-empty concept string",
    ),
    ("label string", dict(labels="dog"), r"`labels` must be a list of N strings"),
    ("empty image id", dict(image_id=""), r"`image_id` must be a non-empty str"),
]


@pytest.mark.parametrize("overrides, pattern", [c[1:] for c in BAD_RECORDS], ids=[c[0] for c in BAD_RECORDS])
def test_validate_rejects_bad_records(overrides, pattern):
    record = make_record(n=3, **overrides)
    with pytest.raises(ValueError, match=pattern):
        record.validate()


def test_validate_rejects_wrong_feature_width():
    record = make_record(n=3, dim=DIM, image_id="wide")
    with pytest.raises(
        ValueError, match=r"image_id='wide'.*`features` has width 6, expected feature_dim=2048"
    ):
        record.validate(expected_feature_dim=2048)


def test_ragged_features_raise_value_error_on_construction():
    with pytest.raises(ValueError, match=r"image_id='rag'.*could not convert the arrays"):
        make_record(n=2, features=[[1.0, 2.0], [3.0]], image_id="rag")


def test_normalized_boxes_rejects_bad_image_size():
    record = make_record(n=1, image_width=0)
    with pytest.raises(ValueError, match=r"`image_width` must be an int > 0"):
        record.normalized_boxes()


# ---------------------------------------------------------------------------------------------------------
# VLMixerRegionFeatureExtractor


def test_top_k_by_confidence_with_ties(extractor):
    scores = np.array([0.3, 0.9, 0.5, 0.9, 0.5, 0.1], np.float32)
    record = make_record(n=6, scores=scores)
    out = extractor(record, max_regions=4)
    # Sorted by score descending; the ties (1, 3) and (2, 4) keep their original order.
    expected = [1, 3, 2, 4]
    np.testing.assert_array_equal(out["visual_features"][0, :, 0], expected)
    assert out["region_labels"] == [[f"concept{i}" for i in expected]]
    np.testing.assert_array_equal(out["region_scores"][0], scores[expected])
    np.testing.assert_array_equal(out["visual_boxes"][0], record.normalized_boxes()[expected])
    np.testing.assert_array_equal(extractor.select_regions(record, 4), expected)


def test_default_max_regions_applies():
    extractor = VLMixerRegionFeatureExtractor(feature_dim=DIM, max_regions=2)
    out = extractor(make_record(n=5))
    assert out["visual_features"].shape == (1, 2, DIM)
    np.testing.assert_array_equal(out["visual_features"][0, :, 0], [0, 1])


def test_min_score_drops_low_confidence_regions():
    extractor = VLMixerRegionFeatureExtractor(feature_dim=DIM, min_score=0.7)
    scores = np.array([0.2, 0.7, 0.95, 0.69], np.float32)
    out = extractor(make_record(n=4, scores=scores))
    # 0.7 itself is kept (the threshold is inclusive, compared in float32).
    np.testing.assert_array_equal(out["visual_features"][0, :, 0], [2, 1])
    assert out["region_labels"] == [["concept2", "concept1"]]


def test_padding_shapes_and_mask(extractor):
    records = [make_record(n=3, image_id="a"), make_record(n=1, image_id="b"), make_record(n=2, image_id="c")]
    out = extractor(records)
    assert isinstance(out, BatchFeature)
    assert out["visual_features"].shape == (3, 3, DIM)
    assert out["visual_boxes"].shape == (3, 3, 4)
    assert out["visual_mask"].shape == (3, 3)
    assert out["region_scores"].shape == (3, 3)
    assert out["visual_features"].dtype == np.float32
    assert out["visual_boxes"].dtype == np.float32
    assert out["visual_mask"].dtype == np.int64
    assert out["region_scores"].dtype == np.float32
    np.testing.assert_array_equal(out["visual_mask"], [[1, 1, 1], [1, 0, 0], [1, 1, 0]])
    pad = out["visual_mask"] == 0
    assert (out["visual_features"][pad] == 0).all()
    assert (out["visual_boxes"][pad] == 0).all()
    assert (out["region_scores"][pad] == 0).all()
    assert [len(labels) for labels in out["region_labels"]] == [3, 1, 2]
    assert all((out["visual_boxes"] >= 0).ravel()) and all((out["visual_boxes"] <= 1).ravel())


def test_empty_record_is_all_padding(extractor):
    records = [RegionFeatures.empty("none", 32, 32, DIM), make_record(n=2)]
    out = extractor(records)
    assert out["visual_features"].shape == (2, 2, DIM)
    np.testing.assert_array_equal(out["visual_mask"], [[0, 0], [1, 1]])
    assert (out["visual_features"][0] == 0).all()
    assert out["region_labels"] == [[], ["concept0", "concept1"]]


@pytest.mark.parametrize("return_tensors", [None, "pt", "np"])
def test_all_empty_records_give_zero_slots(extractor, return_tensors):
    records = [RegionFeatures.empty("a", 10, 10, DIM), RegionFeatures.empty("b", 10, 10, DIM)]
    out = extractor(records, return_tensors=return_tensors)
    assert tuple(out["visual_features"].shape) == (2, 0, DIM)
    assert tuple(out["visual_boxes"].shape) == (2, 0, 4)
    assert tuple(out["visual_mask"].shape) == (2, 0)
    assert out["region_labels"] == [[], []]


def test_all_regions_below_min_score_is_empty_row():
    extractor = VLMixerRegionFeatureExtractor(feature_dim=DIM, min_score=0.99)
    out = extractor([make_record(n=3)])
    assert out["visual_features"].shape == (1, 0, DIM)
    assert out["region_labels"] == [[]]


def test_return_tensors_pt(extractor):
    # The first row is empty, the case where BatchFeature would try to tensorize the label lists.
    records = [RegionFeatures.empty("none", 32, 32, DIM), make_record(n=2)]
    out = extractor(records, return_tensors="pt")
    assert isinstance(out["visual_features"], torch.Tensor) and out["visual_features"].dtype == torch.float32
    assert isinstance(out["visual_boxes"], torch.Tensor) and out["visual_boxes"].dtype == torch.float32
    assert isinstance(out["visual_mask"], torch.Tensor) and out["visual_mask"].dtype == torch.int64
    assert isinstance(out["region_scores"], torch.Tensor) and out["region_scores"].dtype == torch.float32
    assert out["region_labels"] == [[], ["concept0", "concept1"]]
    assert tuple(out["visual_features"].shape) == (2, 2, DIM)
    # Converting again (e.g. by a processor) also leaves the labels alone; so does `.to`.
    out.convert_to_tensors("pt")
    out = out.to(torch.float64)
    assert out["region_labels"] == [[], ["concept0", "concept1"]]
    assert out["visual_mask"].dtype == torch.int64


def test_return_tensors_none_gives_numpy(extractor):
    out = extractor([make_record(n=2)])
    for key in extractor.model_input_names + ["region_scores"]:
        assert isinstance(out[key], np.ndarray), key
    assert isinstance(out["region_labels"], list)


def test_call_validates_records(extractor):
    bad = make_record(n=2, image_id="bad-one", scores=[0.5, 2.0])
    with pytest.raises(ValueError, match=r"image_id='bad-one'.*`scores`"):
        extractor([make_record(n=1), bad])


def test_call_checks_feature_width():
    extractor = VLMixerRegionFeatureExtractor(feature_dim=2048)
    with pytest.raises(ValueError, match=r"`features` has width 6, expected feature_dim=2048"):
        extractor(make_record(n=2))


def test_call_rejects_empty_list(extractor):
    with pytest.raises(ValueError, match=r"`regions` is empty; expected at least one RegionFeatures"):
        extractor([])


def test_call_rejects_non_record_entries(extractor):
    with pytest.raises(ValueError, match=r"`regions\[1\]` is a dict; expected a RegionFeatures record"):
        extractor([make_record(n=1), {"features": np.zeros((1, DIM))}])
    with pytest.raises(ValueError, match=r"`regions` must be a RegionFeatures or a list of RegionFeatures"):
        extractor(np.zeros((1, DIM)))


def test_call_rejects_bad_arguments(extractor):
    with pytest.raises(ValueError, match=r"`max_regions` must be a positive int, got 0"):
        extractor(make_record(n=1), max_regions=0)
    with pytest.raises(ValueError, match=r"`return_tensors` must be 'pt', 'np' or None, got 'tf'"):
        extractor(make_record(n=1), return_tensors="tf")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(feature_dim=0), r"`feature_dim` must be a positive int"),
        (dict(feature_dim=2.5), r"`feature_dim` must be a positive int"),
        (dict(max_regions=-1), r"`max_regions` must be a positive int"),
        (dict(max_regions=True), r"`max_regions` must be a positive int"),
        (dict(min_score=1.5), r"`min_score` must be a float in \[0, 1\]"),
        (dict(detector=""), r"`detector` must be a non-empty str"),
        (dict(box_format="xywh"), r"`box_format` must be one of \('xyxy',\)"),
        (dict(feature_dtype="int8"), r"`feature_dtype` must be one of"),
    ],
)
def test_extractor_rejects_bad_settings(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        VLMixerRegionFeatureExtractor(**kwargs)


def test_save_and_load_round_trip(tmp_path):
    extractor = VLMixerRegionFeatureExtractor(
        feature_dim=64, max_regions=7, min_score=0.25, detector="vinvl-x152c4", feature_dtype="float16"
    )
    extractor.save_pretrained(tmp_path)
    with open(os.path.join(tmp_path, "preprocessor_config.json")) as f:
        saved = json.load(f)
    assert saved["feature_extractor_type"] == "VLMixerRegionFeatureExtractor"
    assert saved["detector"] == "vinvl-x152c4"

    loaded = VLMixerRegionFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, VLMixerRegionFeatureExtractor)
    for name in ("feature_dim", "max_regions", "min_score", "detector", "box_format", "feature_dtype"):
        assert getattr(loaded, name) == getattr(extractor, name), name
    assert loaded.to_dict() == extractor.to_dict()

    overridden = VLMixerRegionFeatureExtractor.from_pretrained(tmp_path, max_regions=3)
    assert overridden.max_regions == 3 and overridden.detector == "vinvl-x152c4"
