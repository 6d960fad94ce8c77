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
"""Region-feature extraction with a torchvision Faster R-CNN (`vlmixer extract-features`).

[`RegionDetector`] runs a torchvision Faster R-CNN on a batch of images and returns, per image, the final
detections as [`RegionFeatures`]: pixel boxes in the original image, class names, scores, and for each box its
RoI-pooled box-head feature (the `TwoMLPHead` output, 1024-d for `fasterrcnn_resnet50_fpn` and the MobileNet
variants). The features are those of the *final* boxes: after the detector's post-processing (score threshold,
class-wise NMS, top `box_detections_per_img`), the boxes are pooled again with `roi_heads.box_roi_pool` and
passed through `roi_heads.box_head`, as bottom-up-attention does.

[`extract_features`] runs it over a folder of images into a region store, resumably: image ids already in the
store are skipped, and every `shard_size` images the new records are committed as a new shard
(`RegionStoreWriter`), so an interrupted run (a crash, Ctrl-C, `max_images`) continues where it stopped and
never duplicates an image. Images are opened with PIL, rotated by their EXIF orientation, and converted to RGB
explicitly (grayscale, palette, CMYK and RGBA images are all read as 3-channel RGB); the recorded image size
is that of the rotated image.

Needs the optional extra `detect` (torchvision, pillow).

**Detector weights.** Nothing is downloaded. Pass a local checkpoint file with `--weights`:

- *COCO (80 classes, torchvision)*: the torchvision checkpoint of the architecture, e.g.
  `fasterrcnn_resnet50_fpn_coco-258fb6c6.pth` (the file `torchvision.models.detection.
  FasterRCNN_ResNet50_FPN_Weights.COCO_V1` downloads into `~/.cache/torch/hub/checkpoints/`; copy it from a
  machine with internet access). Labels are the COCO category names of torchvision's weights meta (91 entries
  with `__background__` and `N/A` placeholders, as the checkpoint's class ids expect); `--labels FILE` gives
  other names (one per line, line `k` naming class id `k`, line 0 the background).
  `vlmixer extract-features --images photos/ --output regions --weights fasterrcnn_resnet50_fpn_coco-258fb6c6.pth`
- *A fine-tuned torchvision detector*: any state dict of the same architecture (a `.pth` / `.bin` read with
  `weights_only=True`, a `{"model": state_dict}` training checkpoint, or a `.safetensors` file); the number of
  classes is read from the checkpoint and `--labels` must name them.
- *Visual Genome (1600 classes, the VinVL / BUTD features of the paper)*: those detectors are not torchvision
  models. Use their released features instead and convert them: `vlmixer convert-features --format vinvl`
  (VinVL features.tsv + predictions.tsv) or `--format butd` (BUTD / LXMERT obj36 TSV); see
  `processing.readers`.

`--random-weights` builds the detector with random weights (seeded), for tests and smoke runs only: its boxes
and labels are meaningless and its confidences are about `1 / num_classes`, so pair it with
`--score-threshold 0`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging

from .feature_extraction_vlmixer import RegionFeatures
from .region_store import RegionStore, RegionStoreWriter


logger = logging.get_logger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "ExtractionReport",
    "RegionDetector",
    "extract_features",
    "list_images",
    "main",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: torchvision Faster R-CNN builders this module knows, by name.
ARCHITECTURES = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
)


def coco_category_names() -> list[str]:
    """The 91 COCO category names of torchvision's detection weights (index = class id; 0 is background)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def _load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Detector weights {path} do not exist; expected a local checkpoint file.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling / safetensors errors come in many types
        raise ValueError(
            f"Cannot read the detector weights {path}: {type(error).__name__}: {error}"
        ) from error
    for key in ("model", "state_dict"):  # training checkpoints wrap the state dict
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise ValueError(f"Detector weights {path} do not hold a state dict of tensors.")
    return checkpoint


class RegionDetector:
    r"""A torchvision Faster R-CNN returning the final detections of each image with pooled box features.

    Build one with [`RegionDetector.from_torchvision`], or wrap a `FasterRCNN` model you built.

    Args:
        model: A `torchvision.models.detection.FasterRCNN` (put in eval mode here).
        label_names: Name of each class id of the model (`len == num_classes`, index 0 the background).
        name: Detector name recorded in the store (e.g. `"fasterrcnn_resnet50_fpn-coco"`).
        device: Where to run the model.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        label_names: Sequence[str],
        *,
        name: str = "torchvision-fasterrcnn",
        device: str | torch.device = "cpu",
    ) -> None:
        num_classes = model.roi_heads.box_predictor.cls_score.out_features
        if len(label_names) != num_classes:
            raise ValueError(
                f"label_names has {len(label_names)} names but the detector has {num_classes} classes; expected one "
                "name per class id (index 0 the background)."
            )
        self.model = model.eval().to(device)
        self.label_names = list(label_names)
        self.name = name
        self.device = torch.device(device)

    @classmethod
    def from_torchvision(
        cls,
        architecture: str = "fasterrcnn_resnet50_fpn",
        *,
        weights: str | os.PathLike | None = None,
        random_weights: bool = False,
        label_names: Sequence[str] | None = None,
        min_size: int = 800,
        max_size: int = 1333,
        box_score_thresh: float = 0.2,
        box_detections_per_img: int = 50,
        seed: int = 0,
        device: str | torch.device = "cpu",
        **model_kwargs,
    ) -> RegionDetector:
        """Builds a torchvision Faster R-CNN from a local weights file, or with random weights.

        Args:
            architecture: One of `ARCHITECTURES` (a `torchvision.models.detection` builder name).
            weights: A local checkpoint of that architecture (see the module docstring). Never downloaded.
            random_weights: Build with random (seeded) weights instead, for tests. Exactly one of `weights`
                and `random_weights` must be given.
            label_names: Class names, index = class id. Default: the 91 COCO names of torchvision (the number
                of classes then comes from them; with `weights` it comes from the checkpoint).
            min_size: Shorter image side after resizing, in pixels (torchvision default 800).
            max_size: Longest image side after resizing, in pixels (torchvision default 1333).
            box_score_thresh: Detections with a lower confidence are dropped.
            box_detections_per_img: Most detections kept per image (the regions of the store).
            seed: Seed of the random weights.
            device: Where to run the model.
            model_kwargs: Other `FasterRCNN` settings, e.g. `rpn_post_nms_top_n_test` (proposals per image
                given to the box head, 1000 by default, 150 for the 320 MobileNet) or `box_nms_thresh`.

        Raises:
            ValueError: For an unknown architecture, both or neither of `weights` / `random_weights`, an
                unreadable checkpoint or one that does not fit the architecture, or label names that do not
                match the number of classes.
        """
        from torchvision.models import detection

        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"Unknown detector architecture {architecture!r}; expected one of {ARCHITECTURES}."
            )
        if (weights is None) == (not random_weights):
            raise ValueError(
                "Give exactly one of weights (a local checkpoint file) and random_weights=True; weights are never "
                "downloaded."
            )
        state_dict = _load_state_dict(weights) if weights is not None else None
        if state_dict is not None and "roi_heads.box_predictor.cls_score.weight" in state_dict:
            num_classes = int(state_dict["roi_heads.box_predictor.cls_score.weight"].shape[0])
        else:
            num_classes = len(label_names) if label_names is not None else len(coco_category_names())
        if label_names is None:
            label_names = coco_category_names()
        if len(label_names) != num_classes:
            raise ValueError(
                f"The detector has {num_classes} classes but {len(label_names)} label names were given; pass a "
                "labels file with one name per class id (line 0 the background)."
            )
        builder = getattr(detection, architecture)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = builder(
                weights=None,
                weights_backbone=None,
                num_classes=num_classes,
                min_size=min_size,
                max_size=max_size,
                box_score_thresh=box_score_thresh,
                box_detections_per_img=box_detections_per_img,
                **model_kwargs,
            )
        if state_dict is not None:
            try:
                model.load_state_dict(state_dict)
            except RuntimeError as error:
                raise ValueError(f"The weights {weights} do not fit {architecture}: {error}") from error
            name = f"{architecture}-{Path(weights).stem}"
        else:
            name = f"{architecture}-random-seed{seed}"
        return cls(model, label_names, name=name, device=device)

    @property
    def feature_dim(self) -> int:
        """Width `D` of the region features (the box head's output, 1024 for the torchvision models)."""
        return int(self.model.roi_heads.box_predictor.cls_score.in_features)

    @torch.no_grad()
    def detect(
        self,
        images: Sequence[torch.Tensor | np.ndarray],
        image_ids: Sequence[str],
        image_paths: Sequence[str | None] | None = None,
    ) -> list[RegionFeatures]:
        """Detects the regions of a batch of images.

        Args:
            images: `B` RGB images, each a float tensor `(3, H, W)` in `[0, 1]` or a uint8 array `(H, W, 3)`.
            image_ids: One id per image.
            image_paths: Optional file of each image, recorded in the records.

        Returns:
            `B` [`RegionFeatures`]: `features` `(N, D)` float32 pooled box-head features, `boxes` `(N, 4)` pixel
            `(x1, y1, x2, y2)` in the original image, `labels` class names, `scores` `(N,)` confidences, with
            `N <= box_detections_per_img` in order of decreasing score.
        """
        if len(images) != len(image_ids):
            raise ValueError(
                f"Got {len(images)} images but {len(image_ids)} image ids; expected one id per image."
            )
        image_paths = list(image_paths) if image_paths is not None else [None] * len(images)
        tensors = [
            self._to_tensor(image, image_id) for image, image_id in zip(images, image_ids, strict=True)
        ]
        if not tensors:
            return []
        model = self.model
        original_sizes = [tuple(tensor.shape[-2:]) for tensor in tensors]
        image_list, _ = model.transform(tensors)
        feature_maps = model.backbone(image_list.tensors)
        proposals, _ = model.rpn(image_list, feature_maps)
        detections, _ = model.roi_heads(feature_maps, proposals, image_list.image_sizes)
        # Pool the final boxes again (in the resized frame) and run the box head on them: one feature per box.
        pooled = model.roi_heads.box_roi_pool(
            feature_maps, [detection["boxes"] for detection in detections], image_list.image_sizes
        )
        box_features = model.roi_heads.box_head(pooled).flatten(1)
        detections = model.transform.postprocess(detections, image_list.image_sizes, original_sizes)
        counts = [len(detection["boxes"]) for detection in detections]
        records = []
        for detection, features, size, image_id, image_path in zip(
            detections, box_features.split(counts), original_sizes, image_ids, image_paths, strict=True
        ):
            height, width = size
            records.append(
                RegionFeatures(
                    features=features.float().cpu().numpy(),
                    boxes=detection["boxes"].float().cpu().numpy(),
                    image_width=int(width),
                    image_height=int(height),
                    labels=[self.label_names[int(label)] for label in detection["labels"]],
                    scores=detection["scores"].float().cpu().numpy(),
                    image_id=image_id,
                    image_path=image_path,
                )
            )
        return records

    def _to_tensor(self, image: torch.Tensor | np.ndarray, image_id: str) -> torch.Tensor:
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(
                    f"Image {image_id!r}: expected a uint8 (H, W, 3) RGB array, got {image.dtype} {image.shape}."
                )
            if not (image.flags.writeable and image.flags.c_contiguous):
                image = np.array(image)  # torch wants a writable array
            image = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"Image {image_id!r}: expected a (3, H, W) RGB tensor in [0, 1].")
        return image.to(self.device, torch.float32)


def load_rgb_image(path: str | os.PathLike) -> np.ndarray:
    """Opens an image file as RGB: EXIF orientation applied, any mode converted to 3-channel RGB.

    Returns:
        `np.ndarray` of shape `(H, W, 3)`, uint8.

    Raises:
        ValueError: If the file is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"Cannot read the image {path}: {error}") from error


def list_images(folder: str | os.PathLike) -> list[tuple[str, str]]:
    """The image files under `folder` (recursively, sorted), with their ids.

    The id of an image is its path relative to `folder`, without the extension, with `/` separators
    (`val2014/COCO_val2014_000000000042`).

    Returns:
        `[(image_id, path), ...]`.

    Raises:
        ValueError: If `folder` is not a folder, or two files have the same id (`a.jpg` and `a.png`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images.")
    images, seen = [], {}
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            image_id = path.relative_to(folder).with_suffix("").as_posix()
            if image_id in seen:
                raise ValueError(f"The images {seen[image_id]} and {path} have the same id {image_id!r}.")
            seen[image_id] = path
            images.append((image_id, str(path)))
    return images


@dataclass
class ExtractionReport:
    """What [`extract_features`] did.

    Attributes:
        num_existing: Images of the list already in the store (skipped, not detected again).
        num_extracted: Images detected and stored by this run.
        num_remaining: Images of the list still missing from the store (`max_images` stopped the run).
        bad_images: Images that could not be read (`skip_bad_images=True`), as `(path, reason)`.
    """

    num_existing: int = 0
    num_extracted: int = 0
    num_remaining: int = 0
    bad_images: list[tuple[str, str]] = field(default_factory=list)


def extract_features(
    images: str | os.PathLike | Sequence[tuple[str, str]],
    output_dir: str | os.PathLike,
    detector: RegionDetector,
    *,
    batch_size: int = 4,
    feature_dtype: str = "float16",
    shard_size: int = 256,
    max_images: int | None = None,
    skip_bad_images: bool = False,
    show_progress: bool = True,
    on_batch_end: Callable[[int, list[RegionFeatures]], None] | None = None,
) -> ExtractionReport:
    """Detects the regions of a set of images into a region store, resumably.

    Images whose id is already in the store at `output_dir` are skipped; the others are detected in batches of
    `batch_size` and committed to the store every `shard_size` images (and when the run ends, normally or by an
    exception), so rerunning the same command after an interruption continues where it stopped.

    Args:
        images: A folder (see [`list_images`] for the ids) or a list of `(image_id, path)`.
        output_dir: The region store, created if needed.
        detector: The detector (anything with `detect(images, image_ids, image_paths)`, `feature_dim`, `name`).
        batch_size: Images per detector call.
        feature_dtype: Dtype of the stored features of a new store, `"float16"` or `"float32"`.
        shard_size: Images per committed shard: the most work an interruption by a crash can lose.
        max_images: Stop after detecting this many new images (the next run continues).
        skip_bad_images: Leave out unreadable image files (listed in the report) instead of raising.
        show_progress: Show a progress bar (tqdm) over the images to detect.
        on_batch_end: Called as `on_batch_end(batch_index, records)` after each batch is added to the store.

    Returns:
        An [`ExtractionReport`].

    Raises:
        ValueError: If an image cannot be read (unless `skip_bad_images`), or the store at `output_dir` has
            another feature width or dtype.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive number of images, got {batch_size!r}.")
    image_list = list_images(images) if isinstance(images, (str, os.PathLike)) else list(images)
    report = ExtractionReport()
    with RegionStoreWriter(
        output_dir,
        feature_dim=detector.feature_dim,
        feature_dtype=feature_dtype,
        detector=detector.name,
        shard_size=shard_size,
    ) as writer:
        todo = [(image_id, path) for image_id, path in image_list if image_id not in writer]
        report.num_existing = len(image_list) - len(todo)
        if max_images is not None:
            todo, rest = todo[:max_images], todo[max_images:]
            report.num_remaining = len(rest)
        progress = logging.tqdm(
            total=len(todo), disable=not show_progress, desc="Extracting regions", unit="image"
        )
        with progress:
            for batch_index, start in enumerate(range(0, len(todo), batch_size)):
                batch = todo[start : start + batch_size]
                loaded = []
                for image_id, path in batch:
                    try:
                        loaded.append((image_id, path, load_rgb_image(path)))
                    except ValueError as error:
                        if not skip_bad_images:
                            raise
                        report.bad_images.append((path, str(error)))
                        report.num_remaining += 1
                if loaded:
                    ids, paths, arrays = zip(*loaded, strict=True)
                    records = detector.detect(list(arrays), list(ids), list(paths))
                    for record in records:
                        writer.add(record)
                    report.num_extracted += len(records)
                else:
                    records = []
                progress.update(len(batch))
                if on_batch_end is not None:
                    on_batch_end(batch_index, records)
    logger.info(
        f"Extracted {report.num_extracted} images into {output_dir} ({report.num_existing} were already there, "
        f"{report.num_remaining} remain)."
    )
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="vlmixer extract-features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", required=True, help="Folder of images (searched recursively).")
    parser.add_argument(
        "--output",
        "--output_dir",
        dest="output",
        required=True,
        help="The region store (created, or continued when it exists).",
    )
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument(
        "--weights", default=None, help="Local detector checkpoint file (.pth/.bin/.safetensors)."
    )
    weights.add_argument(
        "--random-weights",
        "--random_weights",
        dest="random_weights",
        action="store_true",
        help="Random (seeded) weights, for tests: meaningless regions.",
    )
    parser.add_argument("--architecture", default="fasterrcnn_resnet50_fpn", choices=ARCHITECTURES)
    parser.add_argument(
        "--labels", default=None, help="File of class names, line k naming class id k (default: COCO names)."
    )
    parser.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=4)
    parser.add_argument(
        "--min-size",
        "--min_size",
        dest="min_size",
        type=int,
        default=800,
        help="Shorter image side after resizing, pixels.",
    )
    parser.add_argument(
        "--max-size",
        "--max_size",
        dest="max_size",
        type=int,
        default=1333,
        help="Longest image side after resizing, pixels.",
    )
    parser.add_argument(
        "--score-threshold",
        "--score_threshold",
        dest="score_threshold",
        type=float,
        default=0.2,
        help="Drop detections with a lower confidence.",
    )
    parser.add_argument(
        "--max-detections",
        "--max_detections",
        dest="max_detections",
        type=int,
        default=50,
        help="Most regions kept per image.",
    )
    parser.add_argument(
        "--num-proposals",
        "--num_proposals",
        dest="num_proposals",
        type=int,
        default=None,
        help="Region proposals per image given to the box head (default: the architecture's).",
    )
    parser.add_argument(
        "--max-images",
        "--max_images",
        dest="max_images",
        type=int,
        default=None,
        help="Stop after this many new images (rerun to continue).",
    )
    parser.add_argument(
        "--feature-dtype",
        "--feature_dtype",
        dest="feature_dtype",
        default="float16",
        choices=["float16", "float32"],
    )
    parser.add_argument(
        "--shard-size",
        "--shard_size",
        dest="shard_size",
        type=int,
        default=256,
        help="Images per committed shard.",
    )
    parser.add_argument(
        "--skip-bad-images",
        "--skip_bad_images",
        dest="skip_bad_images",
        action="store_true",
        help="Leave out unreadable image files instead of stopping.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of --random-weights.")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    model_kwargs = {}
    if args.num_proposals is not None:
        model_kwargs = {
            "rpn_pre_nms_top_n_test": 2 * args.num_proposals,
            "rpn_post_nms_top_n_test": args.num_proposals,
        }
    label_names = None
    if args.labels:
        with open(args.labels, encoding="utf-8") as file:
            label_names = [line.strip() for line in file if line.strip()]
    detector = RegionDetector.from_torchvision(
        args.architecture,
        weights=args.weights,
        random_weights=args.random_weights,
        label_names=label_names,
        min_size=args.min_size,
        max_size=args.max_size,
        box_score_thresh=args.score_threshold,
        box_detections_per_img=args.max_detections,
        seed=args.seed,
        device=args.device,
        **model_kwargs,
    )
    report = extract_features(
        args.images,
        args.output,
        detector,
        batch_size=args.batch_size,
        feature_dtype=args.feature_dtype,
        shard_size=args.shard_size,
        max_images=args.max_images,
        skip_bad_images=args.skip_bad_images,
    )
    store = RegionStore.load(args.output)
    print(
        f"extracted {report.num_extracted} new images ({report.num_existing} already stored, {report.num_remaining} "
        f"remaining); the store {args.output} holds {len(store)} images, {store.num_regions} regions"
    )
    for path, reason in report.bad_images:
        print(f"  unreadable: {path}: {reason}")


if __name__ == "__main__":
    main()
