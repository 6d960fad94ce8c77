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
"""A classical detector of flat-colour shapes on a plain background: the region detector of easy-VQA.

easy-VQA (`pip install easy-vqa`, MIT) images hold one shape (circle, rectangle or triangle) of one of eight
flat colours on a light, uniform background, drawn at twice the size and downsampled (so edges are
anti-aliased). On such images a learned detector is not needed: [`ShapeDetector`] is the honest stand-in for
the Faster R-CNN of the paper. It learns nothing; every step is a fixed rule.

**Detection** ([`ShapeDetector.detect`]), for an RGB image of any size:

1. *Background*: the per-channel median of the border pixels (the shape may touch the border, but never
   covers half of it).
2. *Shape pixels*: the pixels at least half as far (Euclidean RGB distance) from the background as the farthest
   pixel; the largest 8-connected component of them is the shape (`scipy.ndimage.label`). If no pixel is
   `min_contrast` away from the background, or the component has fewer than `min_pixels` pixels, the image has
   no shape and the record has **zero regions** (`RegionFeatures.empty`; the region store accepts them). A
   detector finding nothing is not an error.
3. *Box*: the pixel extent of the component, `(x1, y1, x2, y2)` in pixels with pixel edges as coordinates
   (`x2 = last column + 1`), so the box lies inside `[0, W] x [0, H]`.
4. *Colour*: the shape colour is the median of its core pixels (those at least 90% as far from the background
   as the farthest); its label is the nearest colour of [`PALETTE`] (Euclidean RGB). *Coverage*: every pixel's
   fraction `alpha` in `[0, 1]` of shape colour, from projecting `pixel - background` on `colour - background`.
5. *Shape*: each shape model is fitted to the coverage around the shape by its moments (the centroid and the
   second moments fix the box of a `rectangle`, of a `circle` (an ellipse in general), and of a `triangle`
   with its apex in the middle of one side and its base along the opposite side, in four orientations;
   easy-VQA's point up), rendered with 4 x 4 supersampling, and compared with the coverage (mean absolute
   difference). The shape of the best fitting model gives the label. Fitting the box by moments rather than
   taking the pixel box makes the comparison exact to a fraction of a pixel, which matters for small shapes
   whose edges half cover a row of pixels.

**Confidences** are margin based, in `[0.5, 1]`: with `d1 <= d2` the distances to the best and second best
class (distance to the palette colour, or error of the shape model), `score = 0.5 + 0.5 * (d2 - d1) / d2`:
1.0 for an exact match, 0.5 when the two classes are equally close.

**Regions.** Each detected shape gives *two* regions with the same box, as concept labels for shape and colour:
region 0 is labelled with the shape name (`"circle"`), region 1 with the colour name (`"red"`). Their features
are the same description of the shape, except for the region-type indicator at the end.

**Features** (float32, width [`FEATURE_DIM`] = 217; the slices are [`FEATURE_LAYOUT`]):

| slice       | width | content                                                                               |
|-------------|-------|---------------------------------------------------------------------------------------|
| `0:3`       | 3     | shape colour (median RGB of the core pixels), in `[0, 1]`                             |
| `3:67`      | 64    | joint RGB histogram of the shape pixels, 4 bins per channel (bin = value // 64, index `16 r + 4 g + b`), weighted by coverage, sums to 1 |
| `67:71`     | 4     | geometry: fill ratio (coverage sum / box area), box width / W, box height / H, coverage sum / (W * H) |
| `71:215`    | 144   | the coverage inside the box resampled to 12 x 12 (row-major), in `[0, 1]`             |
| `215:217`   | 2     | region type: `(1, 0)` for the shape region, `(0, 1)` for the colour region            |

**Palette** ([`PALETTE`]): the eight colours of easy-VQA. The installed package does not ship them (only images,
questions and `answers.txt`); they were measured from its images, whose shape cores hold exactly these values
in every image checked, and agree with easy-VQA's generator (`color.py`):
black (0, 0, 0), gray (128, 128, 128), red (255, 0, 0), green (0, 255, 0), blue (0, 0, 255),
yellow (255, 255, 0), teal (0, 128, 128), brown (165, 42, 42). The names are those of easy-VQA's answers.

[`detect_to_store`] detects a set of image files into a region store (`RegionStoreWriter`), resumably: image
ids already in the store are skipped and shards are committed as they fill. The store records the detector
name [`DETECTOR_NAME`] and the feature width; its boxes are always pixel `(x1, y1, x2, y2)` ([`BOX_FORMAT`]).

Needs numpy, Pillow and scipy (`scipy.ndimage`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from PIL import Image
from transformers.utils import logging

from .feature_extraction_vlmixer import RegionFeatures
from .region_detector import ExtractionReport, load_rgb_image
from .region_store import RegionStoreWriter


logger = logging.get_logger(__name__)

__all__ = [
    "BOX_FORMAT",
    "DETECTOR_NAME",
    "FEATURE_DIM",
    "FEATURE_LAYOUT",
    "MASK_SIZE",
    "PALETTE",
    "SHAPES",
    "ShapeDetector",
    "detect_to_store",
]

#: Name of the detector recorded in region stores.
DETECTOR_NAME = "easy-vqa-shape-detector"
#: Box format of the records: pixel `(x1, y1, x2, y2)`, origin at the top-left corner, pixel edges as coordinates.
BOX_FORMAT = "xyxy"

#: easy-VQA's shape colours (RGB, 0-255), by answer name.
PALETTE: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "teal": (0, 128, 128),
    "brown": (165, 42, 42),
}
#: easy-VQA's shape names (its answers).
SHAPES = ("circle", "rectangle", "triangle")

#: Side of the resampled coverage mask in the features.
MASK_SIZE = 12
_HISTOGRAM_BINS = 4  # per channel
_SUPERSAMPLING = 4  # per axis, for the shape templates

#: Slices of the feature vector (see the module docstring).
FEATURE_LAYOUT: dict[str, slice] = {
    "color": slice(0, 3),
    "histogram": slice(3, 3 + _HISTOGRAM_BINS**3),
    "geometry": slice(3 + _HISTOGRAM_BINS**3, 7 + _HISTOGRAM_BINS**3),
    "mask": slice(7 + _HISTOGRAM_BINS**3, 7 + _HISTOGRAM_BINS**3 + MASK_SIZE**2),
    "region_type": slice(7 + _HISTOGRAM_BINS**3 + MASK_SIZE**2, 9 + _HISTOGRAM_BINS**3 + MASK_SIZE**2),
}
#: Width of the region features: 3 + 64 + 4 + 144 + 2 = 217.
FEATURE_DIM = FEATURE_LAYOUT["region_type"].stop

_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_RGB = np.asarray([PALETTE[name] for name in _PALETTE_NAMES], dtype=np.float32)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _margin_score(distances: np.ndarray) -> tuple[int, float]:
    """Index of the smallest distance and the margin score `0.5 + 0.5 (d2 - d1) / d2` in `[0.5, 1]`."""
    order = np.argsort(distances, kind="stable")
    d1, d2 = float(distances[order[0]]), float(distances[order[1]])
    score = 1.0 if d2 <= 0.0 else 0.5 + 0.5 * (d2 - d1) / d2
    return int(order[0]), float(min(max(score, 0.5), 1.0))


# Variance of a pixel's coverage about its centre (1/12 px^2 per axis): what sampling area coverage at pixel
# centres adds to the second moments of a shape.
_PIXEL_VARIANCE = 1.0 / 12.0
# The shape models: (name, label). The triangles point up, down, left and right (easy-VQA's point up).
_MODELS = (
    ("rectangle", "rectangle"),
    ("circle", "circle"),
    ("triangle-up", "triangle"),
    ("triangle-down", "triangle"),
    ("triangle-left", "triangle"),
    ("triangle-right", "triangle"),
)


def _fit_box(
    model: str, cx: float, cy: float, var_x: float, var_y: float
) -> tuple[float, float, float, float]:
    """The box `(x1, y1, x2, y2)` of the `model` shape with this centroid and these central second moments.

    A rectangle of width `w` has variance `w**2 / 12` along x, an ellipse `w**2 / 16`; a triangle of width `w`
    and height `h` with its apex on the top side has `w**2 / 24` along x and `h**2 / 18` along y, and its
    centroid two thirds of the height below the apex.
    """
    sx, sy = np.sqrt(max(var_x, 0.0)), np.sqrt(max(var_y, 0.0))
    if model == "rectangle":
        w, h = np.sqrt(12.0) * sx, np.sqrt(12.0) * sy
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if model == "circle":
        w, h = 4.0 * sx, 4.0 * sy
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    if model in ("triangle-up", "triangle-down"):
        w, h = np.sqrt(24.0) * sx, np.sqrt(18.0) * sy
        top = cy - 2 * h / 3 if model == "triangle-up" else cy - h / 3
        return cx - w / 2, top, cx + w / 2, top + h
    w, h = np.sqrt(18.0) * sx, np.sqrt(24.0) * sy
    left = cx - 2 * w / 3 if model == "triangle-left" else cx - w / 3
    return left, cy - h / 2, left + w, cy + h / 2


def _render(model: str, box: tuple[float, float, float, float], x0: int, y0: int, height: int, width: int):
    """Coverage `(height, width)` of the pixels `[y0, y0 + height) x [x0, x0 + width)` by the `model` shape
    inscribed in `box`, from `_SUPERSAMPLING**2` sample points per pixel."""
    s = _SUPERSAMPLING
    bx1, by1, bx2, by2 = box
    offsets = (np.arange(s) + 0.5) / s
    u = ((x0 + np.arange(width)[:, None] + offsets).ravel() - bx1) / max(bx2 - bx1, 1e-6)
    v = ((y0 + np.arange(height)[:, None] + offsets).ravel() - by1) / max(by2 - by1, 1e-6)
    u, v = u[None, :], v[:, None]
    in_u, in_v = (u >= 0) & (u <= 1), (v >= 0) & (v <= 1)
    if model == "rectangle":
        inside = in_u & in_v
    elif model == "circle":
        inside = (2 * u - 1) ** 2 + (2 * v - 1) ** 2 <= 1.0
    elif model == "triangle-up":
        inside = (v >= np.abs(2 * u - 1)) & in_v
    elif model == "triangle-down":
        inside = (1 - v >= np.abs(2 * u - 1)) & in_v
    elif model == "triangle-left":
        inside = (u >= np.abs(2 * v - 1)) & in_u
    else:
        inside = (1 - u >= np.abs(2 * v - 1)) & in_u
    return inside.reshape(height, s, width, s).mean(axis=(1, 3), dtype=np.float32)


def _classify_shape(
    alpha: np.ndarray, component: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[str, float]:
    """The shape name of a component and its margin score.

    Each shape model is fitted to the centroid and second moments of the coverage around the component (the
    component grown by 2 pixels, so that other objects do not count), rendered, and compared (mean absolute
    difference) with the coverage; a shape's error is that of its best model.

    Args:
        alpha: `(H, W)` coverage of every pixel by the shape colour, in `[0, 1]`.
        component: `(H, W)` boolean mask of the shape's connected component.
        box: The component's pixel box `(x1, y1, x2, y2)`.
    """
    from scipy import ndimage

    height, width = alpha.shape
    x1, y1, x2, y2 = box
    near = ndimage.binary_dilation(component, structure=_EIGHT_CONNECTED, iterations=2)
    cy1, cy2, cx1, cx2 = max(y1 - 2, 0), min(y2 + 2, height), max(x1 - 2, 0), min(x2 + 2, width)
    local = np.where(near, alpha, 0.0)[cy1:cy2, cx1:cx2]
    column_mass, row_mass = local.sum(axis=0), local.sum(axis=1)
    mass = max(float(local.sum()), 1e-6)
    xs = cx1 + np.arange(cx2 - cx1) + 0.5  # pixel centres
    ys = cy1 + np.arange(cy2 - cy1) + 0.5
    center_x, center_y = float(column_mass @ xs) / mass, float(row_mass @ ys) / mass
    var_x = float(column_mass @ (xs - center_x) ** 2) / mass - _PIXEL_VARIANCE
    var_y = float(row_mass @ (ys - center_y) ** 2) / mass - _PIXEL_VARIANCE
    errors = dict.fromkeys(SHAPES, np.inf)
    for model, label in _MODELS:
        fitted = _fit_box(model, center_x, center_y, var_x, var_y)
        error = float(np.abs(_render(model, fitted, cx1, cy1, *local.shape) - local).mean())
        errors[label] = min(errors[label], error)
    index, score = _margin_score(np.asarray([errors[name] for name in SHAPES]))
    return SHAPES[index], score


class ShapeDetector:
    """Detects the flat-colour shape of an image and labels its shape and colour (see the module docstring).

    Args:
        min_contrast: Least Euclidean RGB distance (0-255 units) between the background and the farthest pixel
            for the image to hold a shape. easy-VQA's colours are at least ~150 away from its backgrounds.
        min_pixels: Least number of pixels of the shape component.

    Attributes:
        name: [`DETECTOR_NAME`], recorded in region stores.
        feature_dim: [`FEATURE_DIM`].

    Example:

    ```python
    >>> record = ShapeDetector().detect(Image.open("0.png"), "train-0")
    >>> record.labels, record.boxes
    (['rectangle', 'blue'], array([[26., 37., 57., 62.], [26., 37., 57., 62.]], dtype=float32))
    ```
    """

    name = DETECTOR_NAME
    feature_dim = FEATURE_DIM

    def __init__(self, min_contrast: float = 48.0, min_pixels: int = 4) -> None:
        if not min_contrast > 0:
            raise ValueError(f"min_contrast must be > 0 (RGB distance, 0-255 units), got {min_contrast!r}.")
        if int(min_pixels) < 1:
            raise ValueError(f"min_pixels must be >= 1, got {min_pixels!r}.")
        self.min_contrast = float(min_contrast)
        self.min_pixels = int(min_pixels)

    @staticmethod
    def _to_array(image: Image.Image | np.ndarray, image_id: str) -> np.ndarray:
        if isinstance(image, Image.Image):
            if image.mode != "RGB":
                raise ValueError(
                    f"Image {image_id!r}: expected an RGB PIL image, got mode {image.mode!r}; convert it with "
                    "`image.convert('RGB')`."
                )
            array = np.asarray(image, dtype=np.uint8)
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"Image {image_id!r}: expected a uint8 (H, W, 3) RGB array, got {image.dtype} "
                    f"{tuple(image.shape)}."
                )
            array = image
        else:
            raise ValueError(
                f"Image {image_id!r}: expected a PIL image or a uint8 (H, W, 3) numpy array, got "
                f"{type(image).__name__}."
            )
        if array.shape[0] < 3 or array.shape[1] < 3:
            raise ValueError(
                f"Image {image_id!r}: is {array.shape[1]} x {array.shape[0]} pixels; expected at least 3 x 3."
            )
        return array

    def detect(
        self, image: Image.Image | np.ndarray, image_id: str, image_path: str | os.PathLike | None = None
    ) -> RegionFeatures:
        """Detects the shape of one image.

        Args:
            image: An RGB image: a PIL image of mode `"RGB"` or a uint8 numpy array `(H, W, 3)`.
            image_id: Identifier of the image, recorded in the record (a non-empty string).
            image_path: Where the image file is, recorded in the record.

        Returns:
            A [`RegionFeatures`] with `N = 2` regions (shape, then colour) of the same box, or `N = 0` when the
            image holds no shape: `features` `(N, FEATURE_DIM)` float32, `boxes` `(N, 4)` pixel `(x1, y1, x2,
            y2)`, `labels` (`[shape name, colour name]`), `scores` `(N,)` in `[0.5, 1]`, and the image size.

        Raises:
            ValueError: If `image` is not an RGB image (another PIL mode, another dtype or shape of array,
                another type), is smaller than 3 x 3 pixels, or `image_id` is not a non-empty string.
        """
        from scipy import ndimage

        if not isinstance(image_id, str) or not image_id:
            raise ValueError(f"image_id must be a non-empty str, got {image_id!r}.")
        pixels = self._to_array(image, image_id).astype(np.float32)
        height, width = pixels.shape[:2]
        path = os.fspath(image_path) if image_path is not None else None
        empty = RegionFeatures.empty(image_id, width, height, FEATURE_DIM, image_path=path)

        border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
        background = np.median(border, axis=0)
        difference = pixels - background
        distance = np.sqrt((difference**2).sum(axis=-1))
        farthest = float(distance.max())
        if farthest < self.min_contrast:
            return empty

        components, num_components = ndimage.label(distance >= 0.5 * farthest, structure=_EIGHT_CONNECTED)
        sizes = np.bincount(components.ravel(), minlength=num_components + 1)
        sizes[0] = 0
        component = components == int(sizes.argmax())
        if int(sizes.max()) < self.min_pixels:
            return empty
        rows = np.flatnonzero(component.any(axis=1))
        columns = np.flatnonzero(component.any(axis=0))
        y1, y2, x1, x2 = int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1

        # Colour: the median of the core pixels; coverage: the projection on colour - background.
        component_distance = np.where(component, distance, 0.0)
        core = component_distance >= 0.9 * float(component_distance.max())
        color = np.median(pixels[core], axis=0)
        direction = color - background
        alpha = np.clip((difference @ direction) / float(direction @ direction), 0.0, 1.0)
        color_index, color_score = _margin_score(np.linalg.norm(_PALETTE_RGB - color, axis=1))

        shape_name, shape_score = _classify_shape(alpha, component, (x1, y1, x2, y2))
        coverage = np.ascontiguousarray(alpha[y1:y2, x1:x2], dtype=np.float32)

        features = np.zeros((2, FEATURE_DIM), dtype=np.float32)
        features[:, FEATURE_LAYOUT["color"]] = color / 255.0
        weights = np.where(component, alpha, 0.0)
        bins = np.minimum(pixels.astype(np.int64) // (256 // _HISTOGRAM_BINS), _HISTOGRAM_BINS - 1)
        index = (bins[..., 0] * _HISTOGRAM_BINS + bins[..., 1]) * _HISTOGRAM_BINS + bins[..., 2]
        histogram = np.bincount(index.ravel(), weights=weights.ravel(), minlength=_HISTOGRAM_BINS**3)
        features[:, FEATURE_LAYOUT["histogram"]] = histogram / max(float(histogram.sum()), 1e-12)
        covered = float(coverage.sum())
        features[:, FEATURE_LAYOUT["geometry"]] = [
            covered / coverage.size,
            (x2 - x1) / width,
            (y2 - y1) / height,
            covered / (width * height),
        ]
        mask = Image.fromarray(coverage).resize((MASK_SIZE, MASK_SIZE), resample=Image.Resampling.BILINEAR)
        features[:, FEATURE_LAYOUT["mask"]] = np.clip(np.asarray(mask, dtype=np.float32).ravel(), 0.0, 1.0)
        region_type = FEATURE_LAYOUT["region_type"]
        features[0, region_type] = (1.0, 0.0)
        features[1, region_type] = (0.0, 1.0)

        box = np.asarray([x1, y1, x2, y2], dtype=np.float32)
        return RegionFeatures(
            features=features,
            boxes=np.stack([box, box]),
            image_width=width,
            image_height=height,
            labels=[shape_name, _PALETTE_NAMES[color_index]],
            scores=np.asarray([shape_score, color_score], dtype=np.float32),
            image_id=image_id,
            image_path=path,
        )


def detect_to_store(
    image_paths: Mapping[str, str | os.PathLike],
    store_path: str | os.PathLike,
    *,
    detector: ShapeDetector | None = None,
    feature_dtype: str = "float32",
    shard_size: int = 1024,
    skip_bad_images: bool = False,
    show_progress: bool = True,
) -> ExtractionReport:
    """Detects the shapes of image files into a region store, resumably.

    Images whose id is already in the store at `store_path` are skipped; the others are read (as RGB, see
    `processing.region_detector.load_rgb_image`), detected, and added through a `RegionStoreWriter`, which
    commits a shard every `shard_size` images (and the buffered ones when the run ends, normally or by an
    exception), so rerunning after an interruption continues where it stopped. The store records
    [`DETECTOR_NAME`] and [`FEATURE_DIM`]; its boxes are pixel `(x1, y1, x2, y2)`.

    Args:
        image_paths: `{image_id: path}`, detected in this order (e.g. `processing.easy_vqa.store_image_paths()`).
        store_path: The region store folder, created when it does not exist or is empty.
        detector: The detector; a default [`ShapeDetector`] if not given.
        feature_dtype: Dtype of the stored features of a new store, `"float32"` (exact) or `"float16"`.
        shard_size: Images per committed shard.
        skip_bad_images: Leave out unreadable image files (listed in the report) instead of raising.
        show_progress: Show a progress bar (tqdm) over the images to detect.

    Returns:
        An `ExtractionReport` (`num_existing`, `num_extracted`, `num_remaining`, `bad_images`).

    Raises:
        ValueError: If an image cannot be read (unless `skip_bad_images`), an image id is not a non-empty
            string, or the store at `store_path` has another feature width or dtype.
    """
    detector = detector if detector is not None else ShapeDetector()
    report = ExtractionReport()
    with RegionStoreWriter(
        store_path,
        feature_dim=detector.feature_dim,
        feature_dtype=feature_dtype,
        detector=detector.name,
        shard_size=shard_size,
    ) as writer:
        todo = [(image_id, path) for image_id, path in image_paths.items() if image_id not in writer]
        report.num_existing = len(image_paths) - len(todo)
        progress = logging.tqdm(todo, disable=not show_progress, desc="Detecting shapes", unit="image")
        for image_id, path in progress:
            try:
                image = load_rgb_image(path)
            except ValueError as error:
                if not skip_bad_images:
                    raise
                report.bad_images.append((os.fspath(path), str(error)))
                report.num_remaining += 1
                continue
            writer.add(detector.detect(image, image_id, image_path=path))
            report.num_extracted += 1
    logger.info(
        f"Detected {report.num_extracted} images into {store_path} ({report.num_existing} were already there)."
    )
    return report
