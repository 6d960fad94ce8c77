# Copyright 2025 The VLMixer developers.
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
"""Region features (detector output) and the VLMixer region-feature extractor.

VLMixer represents an image by the regions an object detector found in it (VinVL / BUTD style): for each
region a feature vector, a box in pixels, a concept label and a confidence. [`RegionFeatures`] holds the
detector output of one image and checks it; [`VLMixerRegionFeatureExtractor`] turns a batch of records into
padded model inputs (`visual_features`, `visual_boxes`, `visual_mask`).

This module is shipped as Hub remote code: it imports only the standard library, numpy, torch and
transformers.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin
from transformers.utils import TensorType, logging


logger = logging.get_logger(__name__)

__all__ = ["BOX_TOLERANCE_PIXELS", "RegionFeatures", "VLMixerRegionFeatureExtractor"]

#: How far (in pixels) a box may stick out of the image before it is rejected. Detectors round box
#: coordinates, so a box ending at `width + 0.5` is normal; such boxes are clipped to the image.
BOX_TOLERANCE_PIXELS = 1.0

_SUPPORTED_BOX_FORMATS = ("xyxy",)
_SUPPORTED_FEATURE_DTYPES = ("float16", "bfloat16", "float32", "float64")
_SUPPORTED_RETURN_TENSORS = (TensorType.PYTORCH, TensorType.NUMPY)
# Keys of the output that are not model inputs. `region_labels` is a list of lists of strings, which
# `BatchFeature.convert_to_tensors` would try (and fail) to turn into a tensor when a row is empty.
_NON_TENSOR_KEYS = frozenset({"region_labels"})


def _to_numpy(value: Any, dtype: np.dtype) -> np.ndarray:
    """Converts a numpy array, torch tensor or nested sequence to a numpy array of `dtype`."""
    if isinstance(value, torch.Tensor):
        # `.numpy()` does not support bfloat16, hence the cast on the torch side.
        return value.detach().to(device="cpu", dtype=torch.float32).numpy().astype(dtype, copy=False)
    return np.asarray(value, dtype=dtype)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(eq=False, repr=False)
class RegionFeatures:
    """Detector output for one image.

    Arrays may be given as numpy arrays, torch tensors or nested sequences; they are stored as numpy
    arrays (`features`, `boxes` and `scores` as float32). Nothing is checked on construction beyond the
    conversion: call [`RegionFeatures.validate`] (the extractor does) to check the record.

    Attributes:
        features (`np.ndarray` of shape `(N, D)`, float32):
            One feature vector per region. `D` is the detector's feature width (2048 for VinVL / BUTD).
        boxes (`np.ndarray` of shape `(N, 4)`, float32):
            Region boxes in pixels, `(x1, y1, x2, y2)` with the origin at the top-left corner of the image.
        image_width (`int`):
            Image width in pixels (> 0).
        image_height (`int`):
            Image height in pixels (> 0).
        labels (`list[str]` of length `N`):
            Concept label of each region, the detector class name (e.g. `"dog"`, `"traffic light"`).
        scores (`np.ndarray` of shape `(N,)`, float32):
            Detector confidence of each region, in `[0, 1]`.
        image_id (`str`):
            Identifier of the image, used in error messages and by the patch gallery.
        image_path (`str`, *optional*):
            Where the image file is, used to crop patches for pictures.
    """

    features: np.ndarray
    boxes: np.ndarray
    image_width: int
    image_height: int
    labels: list[str]
    scores: np.ndarray
    image_id: str
    image_path: str | None = field(default=None)

    def __post_init__(self) -> None:
        try:
            self.features = _to_numpy(self.features, np.float32)
            # Copied so that clipping in `validate` never writes into the caller's array.
            self.boxes = np.array(_to_numpy(self.boxes, np.float32), dtype=np.float32, copy=True)
            self.scores = _to_numpy(self.scores, np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"RegionFeatures(image_id={self.image_id!r}): could not convert the arrays to float32 numpy "
                f"arrays ({err}); expected features (N, D), boxes (N, 4) and scores (N,) numeric arrays."
            ) from err
        # An empty box list (`[]`) has shape (0,); give it its natural (0, 4) shape.
        if self.boxes.size == 0 and self.boxes.ndim == 1:
            self.boxes = self.boxes.reshape(0, 4)
        if self.labels is not None and not isinstance(self.labels, str):
            self.labels = list(self.labels)
        if isinstance(self.image_width, np.integer):
            self.image_width = int(self.image_width)
        if isinstance(self.image_height, np.integer):
            self.image_height = int(self.image_height)
        if isinstance(self.image_path, os.PathLike):
            self.image_path = os.fspath(self.image_path)

    @classmethod
    def empty(
        cls,
        image_id: str,
        image_width: int,
        image_height: int,
        feature_dim: int,
        image_path: str | None = None,
    ) -> RegionFeatures:
        """Builds the record of an image in which the detector found nothing (`N = 0`).

        Args:
            image_id: Identifier of the image.
            image_width: Image width in pixels.
            image_height: Image height in pixels.
            feature_dim: Feature width `D` of the detector, so that `features` has shape `(0, D)`.
            image_path: Where the image file is.

        Returns:
            A record with `features` of shape `(0, D)`, `boxes` `(0, 4)`, no labels and no scores.
        """
        return cls(
            features=np.zeros((0, feature_dim), dtype=np.float32),
            boxes=np.zeros((0, 4), dtype=np.float32),
            image_width=image_width,
            image_height=image_height,
            labels=[],
            scores=np.zeros((0,), dtype=np.float32),
            image_id=image_id,
            image_path=image_path,
        )

    @property
    def num_regions(self) -> int:
        """Number of regions `N` (rows of `features`)."""
        return int(self.features.shape[0]) if self.features.ndim >= 1 else 0

    def __len__(self) -> int:
        return self.num_regions

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(image_id={self.image_id!r}, num_regions={self.num_regions}, "
            f"features={tuple(self.features.shape)}, image_size=({self.image_width}, {self.image_height}), "
            f"labels={self.labels!r}, image_path={self.image_path!r})"
        )

    def _error(self, field_name: str, message: str) -> ValueError:
        return ValueError(f"RegionFeatures(image_id={self.image_id!r}): `{field_name}` {message}")

    def _check_image_size(self) -> None:
        for name in ("image_width", "image_height"):
            value = getattr(self, name)
            if value is None:
                raise self._error(name, "is missing; expected the image size in pixels (an int > 0).")
            if not _is_int(value) or value <= 0:
                raise self._error(name, f"must be an int > 0 (pixels), got {value!r}.")

    def validate(self, expected_feature_dim: int | None = None) -> None:
        """Checks the record and clips boxes that stick out of the image by at most 1 pixel.

        Boxes that exceed the image by up to [`BOX_TOLERANCE_PIXELS`] (detector rounding) are clipped in
        place to `[0, image_width] x [0, image_height]`; boxes further out are an error.

        Args:
            expected_feature_dim: If given, the required feature width `D`.

        Raises:
            ValueError: If `features` is not 2-D, has the wrong width or holds NaN/inf; if `boxes` is not
                `(N, 4)`, holds NaN/inf, is inverted (`x2 < x1` or `y2 < y1`) or lies outside the image;
                if `features`, `boxes`, `labels` and `scores` disagree on `N`; if the image size is missing
                or not positive; if a score is outside `[0, 1]`; if a label is not a non-empty string; if
                `image_id` is not a non-empty string. The message names the image id and the field.
        """
        if not isinstance(self.image_id, str) or not self.image_id:
            raise self._error("image_id", f"must be a non-empty str, got {self.image_id!r}.")

        features = self.features
        if features.ndim != 2:
            raise self._error(
                "features", f"must be 2-D with shape (N, D), got shape {tuple(features.shape)}."
            )
        if expected_feature_dim is not None and features.shape[1] != expected_feature_dim:
            raise self._error(
                "features",
                f"has width {features.shape[1]}, expected feature_dim={expected_feature_dim} "
                f"(shape (N, {expected_feature_dim})).",
            )
        if not np.isfinite(features).all():
            bad = int((~np.isfinite(features)).any(axis=1).sum())
            raise self._error(
                "features", f"contains NaN or inf values in {bad} region(s); expected finite values."
            )

        boxes = self.boxes
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise self._error("boxes", f"must have shape (N, 4) (x1, y1, x2, y2), got {tuple(boxes.shape)}.")
        if not np.isfinite(boxes).all():
            raise self._error("boxes", "contains NaN or inf values; expected finite pixel coordinates.")

        if self.scores.ndim != 1:
            raise self._error("scores", f"must be 1-D with shape (N,), got shape {tuple(self.scores.shape)}.")
        if isinstance(self.labels, str) or not isinstance(self.labels, list):
            raise self._error("labels", f"must be a list of N strings, got {type(self.labels).__name__}.")

        counts = {
            "features": features.shape[0],
            "boxes": boxes.shape[0],
            "labels": len(self.labels),
            "scores": self.scores.shape[0],
        }
        if len(set(counts.values())) > 1:
            found = ", ".join(f"{name}={count}" for name, count in counts.items())
            raise self._error(
                "features/boxes/labels/scores",
                f"disagree on the number of regions ({found}); expected one entry per region in each.",
            )

        self._check_image_size()

        for i, label in enumerate(self.labels):
            if not isinstance(label, str) or not label.strip():
                raise self._error("labels", f"[{i}] is {label!r}; expected a non-empty concept string.")

        if boxes.shape[0]:
            inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
            if inverted.any():
                i = int(np.flatnonzero(inverted)[0])
                raise self._error(
                    "boxes",
                    f"[{i}] = {boxes[i].tolist()} is inverted; expected x1 <= x2 and y1 <= y2 (xyxy pixels).",
                )
            width, height = self.image_width, self.image_height
            tol = BOX_TOLERANCE_PIXELS
            outside = (
                (boxes[:, 0] < -tol)
                | (boxes[:, 1] < -tol)
                | (boxes[:, 2] > width + tol)
                | (boxes[:, 3] > height + tol)
            )
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise self._error(
                    "boxes",
                    f"[{i}] = {boxes[i].tolist()} lies outside the {width}x{height} image; expected pixel "
                    f"coordinates within [0, {width}] x [0, {height}] (tolerance {tol:g} pixel).",
                )
            np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
            np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])

        # Written as a negated range test so that NaN scores fail it too.
        bad_scores = ~((self.scores >= 0.0) & (self.scores <= 1.0))
        if bad_scores.any():
            i = int(np.flatnonzero(bad_scores)[0])
            raise self._error(
                "scores", f"[{i}] = {float(self.scores[i])!r} is outside [0, 1]; expected a confidence."
            )

    def normalized_boxes(self) -> np.ndarray:
        """Boxes divided by the image size.

        Returns:
            `np.ndarray` of shape `(N, 4)`, float32: `(x1 / W, y1 / H, x2 / W, y2 / H)` clipped to `[0, 1]`.

        Raises:
            ValueError: If the image size is missing or not positive, or `boxes` is not `(N, 4)`.
        """
        self._check_image_size()
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise self._error(
                "boxes", f"must have shape (N, 4) (x1, y1, x2, y2), got {tuple(self.boxes.shape)}."
            )
        scale = np.array(
            [self.image_width, self.image_height, self.image_width, self.image_height], dtype=np.float64
        )
        normalized = self.boxes.astype(np.float64) / scale
        return np.clip(normalized, 0.0, 1.0).astype(np.float32)


class VLMixerRegionFeatureExtractor(FeatureExtractionMixin):
    r"""Turns detector outputs ([`RegionFeatures`]) into padded VLMixer visual inputs.

    For each image it checks the record, drops the regions whose confidence is below `min_score`, keeps
    the `max_regions` most confident ones (sorted by score, descending; ties keep the detector's order),
    normalizes their boxes by the image size, and pads the batch to its longest record with zeros.

    The settings are saved in `preprocessor_config.json` by `save_pretrained` and record the provenance of
    the features the model was trained on (detector name, feature width, box format, stored dtype).

    Args:
        feature_dim (`int`, *optional*, defaults to 2048):
            Width `D` of the region feature vectors. Every record must have this width.
        max_regions (`int`, *optional*, defaults to 50):
            Most regions kept per image (the most confident ones).
        min_score (`float`, *optional*, defaults to 0.0):
            Regions with a confidence below this value are dropped. In `[0, 1]`.
        detector (`str`, *optional*, defaults to `"unknown"`):
            Name of the detector that produced the features (e.g. `"vinvl-x152c4"`), for provenance.
        box_format (`str`, *optional*, defaults to `"xyxy"`):
            Format of the input boxes. Only `"xyxy"` is supported: `(x1, y1, x2, y2)` in pixels, origin at the
            top-left corner. Convert other formats (e.g. `xywh`) when reading the detector files.
        feature_dtype (`str`, *optional*, defaults to `"float32"`):
            Dtype in which the detector features are stored on disk (`"float16"`, `"bfloat16"`, `"float32"`
            or `"float64"`), for provenance and for the region stores built from this configuration. The
            returned `visual_features` are always float32.
    """

    model_input_names = ["visual_features", "visual_boxes", "visual_mask"]

    def __init__(
        self,
        feature_dim: int = 2048,
        max_regions: int = 50,
        min_score: float = 0.0,
        detector: str = "unknown",
        box_format: str = "xyxy",
        feature_dtype: str = "float32",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not _is_int(feature_dim) or feature_dim <= 0:
            raise ValueError(
                f"`feature_dim` must be a positive int (the feature width D), got {feature_dim!r}."
            )
        _check_max_regions(max_regions)
        if (
            not isinstance(min_score, numbers.Real)
            or isinstance(min_score, bool)
            or not 0.0 <= min_score <= 1.0
        ):
            raise ValueError(f"`min_score` must be a float in [0, 1], got {min_score!r}.")
        if not isinstance(detector, str) or not detector:
            raise ValueError(f"`detector` must be a non-empty str naming the detector, got {detector!r}.")
        if box_format not in _SUPPORTED_BOX_FORMATS:
            raise ValueError(
                f"`box_format` must be one of {_SUPPORTED_BOX_FORMATS} ((x1, y1, x2, y2) in pixels), got "
                f"{box_format!r}; convert the boxes to xyxy pixels when reading the detector output."
            )
        if feature_dtype not in _SUPPORTED_FEATURE_DTYPES:
            raise ValueError(
                f"`feature_dtype` must be one of {_SUPPORTED_FEATURE_DTYPES}, got {feature_dtype!r}."
            )
        self.feature_dim = int(feature_dim)
        self.max_regions = int(max_regions)
        self.min_score = float(min_score)
        self.detector = detector
        self.box_format = box_format
        self.feature_dtype = feature_dtype

    def select_regions(self, record: RegionFeatures, max_regions: int | None = None) -> np.ndarray:
        """Indices of the regions of `record` that are kept, in output order.

        Regions with `score < min_score` are dropped; of the rest, the `max_regions` with the highest score
        are kept, sorted by score (descending), ties broken by the original index. The record is not
        validated here.

        Args:
            record: Detector output of one image.
            max_regions: Overrides `self.max_regions` if given.

        Returns:
            `np.ndarray` of shape `(K,)`, int64, with `K <= max_regions`.
        """
        max_regions = self.max_regions if max_regions is None else max_regions
        # Compared in float32, the dtype of the stored scores, so that e.g. a score of 0.7 passes
        # min_score=0.7 even though float32(0.7) < 0.7.
        kept = np.flatnonzero(record.scores >= np.float32(self.min_score))
        order = np.argsort(-record.scores[kept], kind="stable")
        return kept[order][:max_regions].astype(np.int64)

    def __call__(
        self,
        regions: RegionFeatures | Sequence[RegionFeatures],
        return_tensors: str | TensorType | None = None,
        max_regions: int | None = None,
    ) -> BatchFeature:
        """Validates, selects, normalizes and pads the regions of a batch of images.

        Args:
            regions: Detector output of one image, or a list of them (one per image, `B` in all).
            return_tensors: `"pt"` for torch tensors, `"np"` or `None` for numpy arrays.
            max_regions: Overrides `self.max_regions` for this call.

        Returns:
            [`BatchFeature`] with, for `V` the largest number of kept regions in the batch (0 if every record
            is empty):

            - **visual_features** — `(B, V, D)` float32 region features, zeros on padding.
            - **visual_boxes** — `(B, V, 4)` float32 boxes `(x1, y1, x2, y2)` normalized to `[0, 1]` by the
              image width and height, zeros on padding.
            - **visual_mask** — `(B, V)` int64, 1 for a real region and 0 for padding.
            - **region_scores** — `(B, V)` float32 detector confidences, 0 on padding.
            - **region_labels** — `list[list[str]]`, the concept label of each kept region, unpadded. Never
              converted to a tensor.

            Regions are in order of decreasing confidence. `region_scores` and `region_labels` are not model
            inputs (not in `model_input_names`).

        Raises:
            ValueError: If `regions` is empty, holds something other than [`RegionFeatures`], or a record fails
                [`RegionFeatures.validate`] (including a feature width different from `feature_dim`); if
                `max_regions` is not a positive int; if `return_tensors` is not `"pt"`, `"np"` or `None`.
        """
        if isinstance(regions, RegionFeatures):
            regions = [regions]
        if not isinstance(regions, Sequence) or isinstance(regions, str):
            raise ValueError(
                f"`regions` must be a RegionFeatures or a list of RegionFeatures, got {type(regions).__name__}."
            )
        if len(regions) == 0:
            raise ValueError(
                "`regions` is empty; expected at least one RegionFeatures record (one per image)."
            )
        for i, record in enumerate(regions):
            if not isinstance(record, RegionFeatures):
                raise ValueError(
                    f"`regions[{i}]` is a {type(record).__name__}; expected a RegionFeatures record."
                )
        if max_regions is not None:
            _check_max_regions(max_regions)
        tensor_type = _check_return_tensors(return_tensors)

        selected = []
        for record in regions:
            record.validate(expected_feature_dim=self.feature_dim)
            selected.append(self.select_regions(record, max_regions))

        batch_size = len(regions)
        num_slots = max((len(indices) for indices in selected), default=0)
        visual_features = np.zeros((batch_size, num_slots, self.feature_dim), dtype=np.float32)
        visual_boxes = np.zeros((batch_size, num_slots, 4), dtype=np.float32)
        visual_mask = np.zeros((batch_size, num_slots), dtype=np.int64)
        region_scores = np.zeros((batch_size, num_slots), dtype=np.float32)
        region_labels: list[list[str]] = []
        for b, (record, indices) in enumerate(zip(regions, selected, strict=True)):
            count = len(indices)
            visual_features[b, :count] = record.features[indices]
            visual_boxes[b, :count] = record.normalized_boxes()[indices]
            visual_mask[b, :count] = 1
            region_scores[b, :count] = record.scores[indices]
            region_labels.append([record.labels[i] for i in indices])

        data = {
            "visual_features": visual_features,
            "visual_boxes": visual_boxes,
            "visual_mask": visual_mask,
            "region_scores": region_scores,
            "region_labels": region_labels,
        }
        return BatchFeature(data=data, tensor_type=tensor_type, skip_tensor_conversion=set(_NON_TENSOR_KEYS))


def _check_max_regions(max_regions: Any) -> None:
    if not _is_int(max_regions) or max_regions <= 0:
        raise ValueError(f"`max_regions` must be a positive int, got {max_regions!r}.")


def _check_return_tensors(return_tensors: str | TensorType | None) -> TensorType | None:
    if return_tensors is None:
        return None
    try:
        tensor_type = TensorType(return_tensors)
    except ValueError:
        tensor_type = None
    if tensor_type not in _SUPPORTED_RETURN_TENSORS:
        raise ValueError(f"`return_tensors` must be 'pt', 'np' or None, got {return_tensors!r}.")
    return tensor_type
