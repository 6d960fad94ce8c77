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
"""The patch gallery: every detector region of the image-only corpus, indexed by concept.

A patch is one detected region: its feature vector, its normalized box, its concept (the normalized detector
label), its confidence, its image, and its *contextual concepts* (the other concepts detected in the same
image, each with the highest confidence it was detected with there). Cross-modal CutMix draws patches of a
concept from it, weighted by confidence and context.

Everything is stored as flat arrays, with the variable-length parts in CSR form, so a gallery of millions of
patches is a handful of arrays. On disk a gallery is a folder with

- `gallery.safetensors`: all arrays (list below), readable by `safetensors`;
- `gallery_config.json`: concept names, image ids and paths, feature width and dtype, detector provenance,
  counts and the format version.

[`PatchGallery.from_pretrained`] memory-maps the arrays: opening a gallery reads the small header and JSON
file only, and feature rows are read from disk when [`PatchGallery.get_features`] asks for them.

Arrays (`P` patches, `D` feature width, `C` concepts, `K` contextual-concept entries):

| name                  | shape    | dtype           | content                                            |
|-----------------------|----------|-----------------|----------------------------------------------------|
| `features`            | (P, D)   | float16/float32 | region features                                    |
| `boxes`               | (P, 4)   | float32         | `(x1, y1, x2, y2)` divided by the image size       |
| `concept_ids`         | (P,)     | int32           | concept of each patch                              |
| `scores`              | (P,)     | float32         | detector confidence of each patch, in `[0, 1]`     |
| `image_index`         | (P,)     | int32           | image of each patch (index into the image ids)     |
| `context_offsets`     | (P + 1,) | int64           | patch `i`'s contexts are entries `[o[i], o[i+1])`  |
| `context_concept_ids` | (K,)     | int32           | contextual concept (ascending within a patch)      |
| `context_scores`      | (K,)     | float32         | its highest confidence in the patch's image        |
| `concept_offsets`     | (C + 1,) | int64           | concept `c`'s patches are `[o[c], o[c+1])` of ...  |
| `concept_patch_ids`   | (P,)     | int64           | ... the patch ids, ascending within a concept      |

This module is shipped as Hub remote code: it imports only the standard library, numpy, torch and
transformers.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers.utils import cached_file, logging

from .cross_modal_cutmix import normalize_concept


if TYPE_CHECKING:
    from .feature_extraction_vlmixer import RegionFeatures

logger = logging.get_logger(__name__)

__all__ = ["GALLERY_CONFIG_NAME", "GALLERY_FORMAT_VERSION", "GALLERY_WEIGHTS_NAME", "PatchGallery"]

GALLERY_WEIGHTS_NAME = "gallery.safetensors"
GALLERY_CONFIG_NAME = "gallery_config.json"
GALLERY_FORMAT_VERSION = 1

_FEATURE_DTYPES = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
# dtype of every array but `features`.
_ARRAY_DTYPES = {
    "boxes": np.dtype("<f4"),
    "concept_ids": np.dtype("<i4"),
    "scores": np.dtype("<f4"),
    "image_index": np.dtype("<i4"),
    "context_offsets": np.dtype("<i8"),
    "context_concept_ids": np.dtype("<i4"),
    "context_scores": np.dtype("<f4"),
    "concept_offsets": np.dtype("<i8"),
    "concept_patch_ids": np.dtype("<i8"),
}
_ARRAY_NAMES = ("features", *_ARRAY_DTYPES)
_SAFETENSORS_DTYPES = {
    "F16": np.dtype("<f2"),
    "F32": np.dtype("<f4"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
}
_SAFETENSORS_NAMES = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}
# A safetensors header holds names, shapes and offsets only; anything larger is not a gallery file.
_MAX_HEADER_BYTES = 100_000_000
_WRITE_CHUNK_BYTES = 64 * 1024 * 1024


class PatchGallery:
    r"""Image patches (detector regions) of an image-only corpus, indexed by concept.

    Build one with [`PatchGallery.build`] from [`RegionFeatures`] records or with
    [`PatchGallery.from_arrays`] from flat arrays, save it with [`PatchGallery.save_pretrained`] and open it
    memory-mapped with [`PatchGallery.from_pretrained`]. See the module docstring for the arrays; they are
    read-only attributes of the gallery (`gallery.features`, `gallery.context_offsets`, ...).

    Concept names are normalized with [`normalize_concept`] (lower case, plural folding), so `"Dogs"` and
    `"dog"` are one concept; the concept ids index `gallery.concepts`, which is sorted.
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        concepts: Sequence[str],
        image_ids: Sequence[str],
        image_paths: Sequence[str | None] | None = None,
        detector: str = "unknown",
        min_score: float = 0.0,
        source_directory: str | None = None,
    ) -> None:
        missing = [name for name in _ARRAY_NAMES if name not in arrays]
        if missing:
            raise ValueError(f"PatchGallery is missing the arrays {missing}.")
        self.concepts: list[str] = list(concepts)
        self.image_ids: list[str] = list(image_ids)
        self.image_paths: list[str | None] = (
            list(image_paths) if image_paths is not None else [None] * len(self.image_ids)
        )
        self.detector = detector
        self.min_score = float(min_score)
        self._source_directory = source_directory
        self._concept_index = {name: concept_id for concept_id, name in enumerate(self.concepts)}
        for name in _ARRAY_NAMES:
            setattr(self, name, _read_only_view(arrays[name]))
        self._check_consistency()

    # ---------------------------------------------------------------------------------------------- creation

    @classmethod
    def build(
        cls,
        records: Iterable[RegionFeatures],
        feature_dtype: str = "float16",
        min_score: float = 0.0,
        detector: str = "unknown",
        show_progress: bool = True,
    ) -> PatchGallery:
        """Builds a gallery from the detector output of an image-only corpus.

        Every region whose confidence is at least `min_score` becomes a patch; its contextual concepts are the
        other concepts among the kept regions of its image. The gallery is built in memory (`P * D` feature
        values of `feature_dtype`); save it with [`PatchGallery.save_pretrained`].

        Args:
            records: One [`RegionFeatures`] per image (validated here; image ids must be unique).
            feature_dtype: `"float16"` (half the disk and page cache) or `"float32"`.
            min_score: Regions with a lower confidence are left out, in `[0, 1]`.
            detector: Name of the detector, recorded as provenance (e.g. `"vinvl-x152c4"`).
            show_progress: Whether to show a progress bar.

        Returns:
            The gallery. Patch ids follow the order of the records and of the regions within a record.

        Raises:
            ValueError: If a record is invalid, feature widths differ, an image id repeats, a feature does
                not fit `feature_dtype`, or no region is kept.
        """
        dtype = _feature_dtype(feature_dtype)
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score!r}.")
        features, boxes, scores, labels, image_index = [], [], [], [], []
        label_ids: dict[str, int] = {}  # raw label -> id in `names` (first-seen order)
        names: dict[str, int] = {}  # normalized name -> provisional concept id
        image_ids: list[str] = []
        image_paths: list[str | None] = []
        seen_image_ids: set[str] = set()
        feature_dim = None
        progress = logging.tqdm(
            records, disable=not show_progress, desc="Building patch gallery", unit="image"
        )
        for record in progress:
            record.validate(expected_feature_dim=feature_dim)
            feature_dim = record.features.shape[1]
            if record.image_id in seen_image_ids:
                raise ValueError(f"Image id {record.image_id!r} occurs in more than one record.")
            seen_image_ids.add(record.image_id)
            image_ids.append(record.image_id)
            image_paths.append(record.image_path)
            keep = np.flatnonzero(record.scores >= min_score)
            if len(keep) == 0:
                continue
            record_features = record.features[keep].astype(dtype)
            if not np.isfinite(record_features).all():
                raise ValueError(
                    f"RegionFeatures(image_id={record.image_id!r}): features overflow {feature_dtype} "
                    f"(largest magnitude {np.abs(record.features).max():g}); build with feature_dtype='float32'."
                )
            features.append(record_features)
            boxes.append(record.normalized_boxes()[keep])
            scores.append(record.scores[keep])
            for i in keep.tolist():
                label = record.labels[i]
                label_id = label_ids.get(label)
                if label_id is None:
                    name = normalize_concept(label)
                    label_id = label_ids[label] = names.setdefault(name, len(names))
                labels.append(label_id)
            image_index.append(np.full(len(keep), len(image_ids) - 1, dtype=np.int32))
        if feature_dim is None:
            raise ValueError("PatchGallery.build got no records.")
        if not features:
            raise ValueError(
                f"No region of the {len(image_ids)} images has a confidence >= min_score={min_score}."
            )

        # Concept ids follow the sorted concept names, so they do not depend on the order of the records.
        sorted_names = sorted(names)
        new_id = np.empty(len(names), dtype=np.int32)
        new_id[[names[name] for name in sorted_names]] = np.arange(len(names), dtype=np.int32)
        return cls.from_arrays(
            features=np.concatenate(features),
            boxes=np.concatenate(boxes),
            concept_ids=new_id[np.asarray(labels, dtype=np.int64)],
            scores=np.concatenate(scores),
            image_index=np.concatenate(image_index),
            concepts=sorted_names,
            image_ids=image_ids,
            image_paths=image_paths,
            detector=detector,
            min_score=min_score,
        )

    @classmethod
    def from_arrays(
        cls,
        features: np.ndarray,
        boxes: np.ndarray,
        concept_ids: np.ndarray,
        scores: np.ndarray,
        image_index: np.ndarray,
        *,
        concepts: Sequence[str],
        image_ids: Sequence[str],
        image_paths: Sequence[str | None] | None = None,
        context_offsets: np.ndarray | None = None,
        context_concept_ids: np.ndarray | None = None,
        context_scores: np.ndarray | None = None,
        detector: str = "unknown",
        min_score: float = 0.0,
    ) -> PatchGallery:
        """Builds a gallery from flat per-patch arrays (checked here, vectorized).

        `features` is used as is when it is float16 or float32 (a `np.memmap` stays on disk); other arrays
        are converted to their gallery dtype. Without contexts, they are derived from the images: every other
        concept of the patch's image, with its highest confidence there.

        Args:
            features: `(P, D)` float16/float32 region features.
            boxes: `(P, 4)` normalized `(x1, y1, x2, y2)` boxes in `[0, 1]`.
            concept_ids: `(P,)` concept of each patch, indexing `concepts`.
            scores: `(P,)` confidences in `[0, 1]`.
            image_index: `(P,)` image of each patch, indexing `image_ids`.
            concepts: The concept names, normalized (`normalize_concept(name) == name`) and unique.
            image_ids: One unique id per image.
            image_paths: Optional image file of each image.
            context_offsets: `(P + 1,)` CSR offsets of the contexts (all three context arrays or none).
            context_concept_ids: `(K,)` contextual concepts, never the patch's own concept.
            context_scores: `(K,)` their confidences in `[0, 1]`.
            detector: Detector name, for provenance.
            min_score: The confidence threshold the patches were selected with, for provenance.

        Returns:
            The gallery.

        Raises:
            ValueError: If an array has the wrong shape or dtype kind, a value is out of range, or the names
                are not normalized or not unique.
        """
        features = np.asarray(features)
        if features.dtype not in _FEATURE_DTYPES.values():
            if not np.issubdtype(features.dtype, np.floating):
                raise ValueError(f"features must be a float array, got dtype {features.dtype}.")
            features = features.astype(np.float32)
        if features.ndim != 2:
            raise ValueError(f"features must have shape (P, D), got {features.shape}.")
        arrays = {"features": features}
        for name, value in (
            ("boxes", boxes),
            ("concept_ids", concept_ids),
            ("scores", scores),
            ("image_index", image_index),
        ):
            arrays[name] = _as_dtype(name, value)
        num_patches = len(features)
        concepts, image_ids = list(concepts), list(image_ids)
        _check_names(concepts, image_ids, image_paths)
        _check_patch_arrays(arrays, num_patches, len(concepts), len(image_ids))

        context_arrays = (context_offsets, context_concept_ids, context_scores)
        if all(array is None for array in context_arrays):
            context_offsets, context_concept_ids, context_scores = _contexts_from_images(
                arrays["concept_ids"], arrays["scores"], arrays["image_index"]
            )
        elif any(array is None for array in context_arrays):
            raise ValueError(
                "Give all three of context_offsets, context_concept_ids and context_scores, or none."
            )
        arrays["context_offsets"] = _as_dtype("context_offsets", context_offsets)
        arrays["context_concept_ids"] = _as_dtype("context_concept_ids", context_concept_ids)
        arrays["context_scores"] = _as_dtype("context_scores", context_scores)
        _check_context_arrays(arrays, num_patches, len(concepts))

        order = np.argsort(arrays["concept_ids"], kind="stable")
        arrays["concept_patch_ids"] = order.astype(np.int64)
        counts = np.bincount(arrays["concept_ids"], minlength=len(concepts))
        arrays["concept_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(
            arrays,
            concepts=concepts,
            image_ids=image_ids,
            image_paths=image_paths,
            detector=detector,
            min_score=min_score,
        )

    # ------------------------------------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        """Saves the gallery to a folder (`gallery.safetensors` and `gallery_config.json`).

        Both files are written under temporary names in the folder and then renamed, so a reader never sees
        a half-written file; a unique id written into both lets a reader detect a file of another save. The
        arrays are streamed in chunks, so a memory-mapped gallery can be re-saved without loading it.

        Args:
            save_directory: The folder, created if needed.

        Returns:
            The paths of the two files.
        """
        os.makedirs(save_directory, exist_ok=True)
        gallery_uid = uuid.uuid4().hex
        weights_path = os.path.join(save_directory, GALLERY_WEIGHTS_NAME)
        config_path = os.path.join(save_directory, GALLERY_CONFIG_NAME)
        config = {
            "format_version": GALLERY_FORMAT_VERSION,
            "gallery_uid": gallery_uid,
            "num_patches": self.num_patches,
            "num_concepts": self.num_concepts,
            "num_images": self.num_images,
            "num_context_entries": int(len(self.context_concept_ids)),
            "feature_dim": self.feature_dim,
            "feature_dtype": self.feature_dtype,
            "detector": self.detector,
            "min_score": self.min_score,
            "concepts": self.concepts,
            "image_ids": self.image_ids,
            "image_paths": self.image_paths,
        }
        metadata = {"format": "np", "gallery_uid": gallery_uid, "format_version": str(GALLERY_FORMAT_VERSION)}
        temporary_paths = [f"{path}.{gallery_uid}.tmp" for path in (weights_path, config_path)]
        try:
            _write_safetensors(
                temporary_paths[0], {name: getattr(self, name) for name in _ARRAY_NAMES}, metadata
            )
            with open(temporary_paths[1], "w", encoding="utf-8") as file:
                json.dump(config, file, ensure_ascii=False)
                file.write("\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary_paths[0], weights_path)
            os.replace(temporary_paths[1], config_path)
        finally:
            for path in temporary_paths:
                if os.path.exists(path):
                    os.remove(path)
        logger.info(f"Saved a patch gallery of {self.num_patches} patches to {save_directory}")
        return [weights_path, config_path]

    @classmethod
    def from_pretrained(
        cls,
        pretrained_gallery_name_or_path: str | os.PathLike,
        *,
        cache_dir: str | os.PathLike | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        subfolder: str = "",
    ) -> PatchGallery:
        """Opens a saved gallery, memory-mapped.

        Only the safetensors header and `gallery_config.json` are read; the arrays are `np.memmap` views of
        the file, paged in by the OS when used (their pages count as file-backed, reclaimable memory).

        Args:
            pretrained_gallery_name_or_path: A folder written by [`PatchGallery.save_pretrained`], or a Hub
                repository id holding those two files (downloaded to the Hub cache).
            cache_dir: Hub cache folder.
            revision: Hub revision (branch, tag or commit).
            token: Hub token.
            local_files_only: Do not try to download.
            subfolder: Folder of the gallery inside the repository or folder.

        Returns:
            The gallery.

        Raises:
            ValueError: If a file is missing or corrupt, the two files do not belong together, or the arrays
                do not match the configuration.
        """
        source = os.fspath(pretrained_gallery_name_or_path)
        directory = os.path.join(source, subfolder) if subfolder else source
        if os.path.isdir(source):
            weights_path = os.path.join(directory, GALLERY_WEIGHTS_NAME)
            config_path = os.path.join(directory, GALLERY_CONFIG_NAME)
            for path in (weights_path, config_path):
                if not os.path.isfile(path):
                    raise ValueError(
                        f"{directory!r} is not a patch gallery folder: {os.path.basename(path)} is missing."
                    )
        else:
            try:
                weights_path, config_path = (
                    cached_file(
                        source,
                        filename,
                        cache_dir=cache_dir,
                        revision=revision,
                        token=token,
                        local_files_only=local_files_only,
                        subfolder=subfolder,
                    )
                    for filename in (GALLERY_WEIGHTS_NAME, GALLERY_CONFIG_NAME)
                )
            except OSError as error:
                raise ValueError(
                    f"Could not find a patch gallery at {source!r}: it is neither a local folder nor a Hub "
                    f"repository with {GALLERY_WEIGHTS_NAME} and {GALLERY_CONFIG_NAME} ({error})."
                ) from error
            directory = os.path.dirname(weights_path)

        config = _read_config(config_path)
        header, data_start = _read_safetensors_header(weights_path)
        metadata = header.pop("__metadata__", None) or {}
        if metadata.get("gallery_uid") != config["gallery_uid"]:
            raise ValueError(
                f"{weights_path} does not belong to {config_path} (gallery uid {metadata.get('gallery_uid')!r} "
                f"!= {config['gallery_uid']!r}); the folder mixes files of two saves."
            )
        expected = _expected_layout(config)
        if set(header) != set(expected):
            raise ValueError(
                f"{weights_path} holds the arrays {sorted(header)}, expected {sorted(expected)}."
            )
        arrays = {}
        for name, (dtype, shape) in expected.items():
            info = header[name]
            if _SAFETENSORS_DTYPES.get(info.get("dtype")) != dtype or list(info.get("shape", ())) != list(
                shape
            ):
                raise ValueError(
                    f"{weights_path}: array {name!r} is {info.get('dtype')} {info.get('shape')}, but "
                    f"{GALLERY_CONFIG_NAME} implies {_SAFETENSORS_NAMES[dtype]} {list(shape)}."
                )
            start, end = info["data_offsets"]
            if end - start != dtype.itemsize * int(np.prod(shape)):
                raise ValueError(
                    f"{weights_path}: array {name!r} has {end - start} bytes for shape {list(shape)}."
                )
            if len(shape) and 0 in shape:
                arrays[name] = np.empty(shape, dtype=dtype)
            else:
                arrays[name] = np.memmap(
                    weights_path, dtype=dtype, mode="r", offset=data_start + start, shape=shape
                )
        gallery = cls(
            arrays,
            concepts=config["concepts"],
            image_ids=config["image_ids"],
            image_paths=config.get("image_paths"),
            detector=config.get("detector", "unknown"),
            min_score=config.get("min_score", 0.0),
            source_directory=directory,
        )
        return gallery

    # Memory-mapped galleries pickle as their folder (DataLoader workers reopen them) instead of as data.
    def __getstate__(self) -> dict[str, Any]:
        if self._source_directory is not None:
            return {"source_directory": self._source_directory}
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        if set(state) == {"source_directory"}:
            state = PatchGallery.from_pretrained(state["source_directory"]).__dict__
        self.__dict__.update(state)
        for name in _ARRAY_NAMES:
            setattr(self, name, _read_only_view(getattr(self, name)))

    # ----------------------------------------------------------------------------------------------- queries

    @property
    def num_patches(self) -> int:
        """Number of patches `P`."""
        return int(self.features.shape[0])

    def __len__(self) -> int:
        return self.num_patches

    @property
    def feature_dim(self) -> int:
        """Width `D` of the region features."""
        return int(self.features.shape[1])

    @property
    def feature_dtype(self) -> str:
        """Storage dtype of the features, `"float16"` or `"float32"`."""
        return self.features.dtype.name

    @property
    def num_concepts(self) -> int:
        """Number of concepts `C`."""
        return len(self.concepts)

    @property
    def num_images(self) -> int:
        """Number of images of the corpus (images without kept regions included)."""
        return len(self.image_ids)

    @property
    def is_memory_mapped(self) -> bool:
        """Whether the features are memory-mapped from a file (galleries opened with `from_pretrained`)."""
        return isinstance(self.features, np.memmap)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_patches={self.num_patches}, num_concepts={self.num_concepts}, "
            f"num_images={self.num_images}, feature_dim={self.feature_dim}, feature_dtype={self.feature_dtype!r}, "
            f"detector={self.detector!r}, memory_mapped={self.is_memory_mapped})"
        )

    def has_concept(self, name: str) -> bool:
        """Whether `name` (normalized first) is a concept of the gallery."""
        return normalize_concept(name) in self._concept_index

    def concept_id(self, name: str) -> int:
        """The id of concept `name`, normalized first (`"Dogs"` finds `"dog"`).

        Raises:
            ValueError: If the gallery has no such concept; the message names it.
        """
        normalized = normalize_concept(name)
        concept_id = self._concept_index.get(normalized)
        if concept_id is None:
            raise ValueError(
                f"Unknown concept {name!r} (normalized {normalized!r}): the gallery has {self.num_concepts} "
                f"concepts ({', '.join(map(repr, self.concepts[:10]))}{', ...' if self.num_concepts > 10 else ''})."
            )
        return concept_id

    def patches_of(self, concept_id: int) -> np.ndarray:
        """The patches of a concept.

        Returns:
            `(n,)` int64 patch ids, ascending (a read-only view).
        """
        if not 0 <= concept_id < self.num_concepts:
            raise ValueError(f"concept_id {concept_id} is out of range [0, {self.num_concepts}).")
        return self.concept_patch_ids[self.concept_offsets[concept_id] : self.concept_offsets[concept_id + 1]]

    def _patch_index(self, patch_ids: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(patch_ids, torch.Tensor):
            patch_ids = patch_ids.detach().cpu().numpy()
        index = np.asarray(patch_ids, dtype=np.int64).reshape(-1)
        if len(index) and (index.min() < 0 or index.max() >= self.num_patches):
            bad = index[(index < 0) | (index >= self.num_patches)][0]
            raise IndexError(f"Patch id {bad} is out of range [0, {self.num_patches}).")
        return index

    def get_features(self, patch_ids: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Feature rows of patches (read from disk for a memory-mapped gallery).

        Args:
            patch_ids: `(n,)` patch ids, any order, repeats allowed.

        Returns:
            `torch.FloatTensor` of shape `(n, D)`, float32.
        """
        index = self._patch_index(patch_ids)
        return torch.from_numpy(np.asarray(self.features[index], dtype=np.float32))

    def get_boxes(self, patch_ids: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Normalized boxes of patches.

        Args:
            patch_ids: `(n,)` patch ids.

        Returns:
            `torch.FloatTensor` of shape `(n, 4)`: `(x1, y1, x2, y2)` divided by the image size, in `[0, 1]`.
        """
        index = self._patch_index(patch_ids)
        return torch.from_numpy(np.array(self.boxes[index], dtype=np.float32))

    def contexts(self, patch_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Contextual concepts of a patch: the other concepts detected in its image.

        Returns:
            `(concept_ids, scores)`: `(k,)` int32 concept ids (ascending, never the patch's own concept) and
            `(k,)` float32 confidences (the highest of each concept in the image).
        """
        (patch_id,) = self._patch_index([patch_id])
        start, end = self.context_offsets[patch_id], self.context_offsets[patch_id + 1]
        return np.array(self.context_concept_ids[start:end]), np.array(self.context_scores[start:end])

    def image_id_of(self, patch_id: int) -> str:
        """Id of the image a patch was detected in."""
        (patch_id,) = self._patch_index([patch_id])
        return self.image_ids[int(self.image_index[patch_id])]

    def image_path_of(self, patch_id: int) -> str | None:
        """Path of the image a patch was detected in, if the records gave one."""
        (patch_id,) = self._patch_index([patch_id])
        return self.image_paths[int(self.image_index[patch_id])]

    def _check_consistency(self) -> None:
        """Cheap checks (shapes, dtypes, CSR ends) that do not read the arrays."""
        num_patches = self.num_patches
        if self.features.dtype not in _FEATURE_DTYPES.values():
            raise ValueError(f"features must be float16 or float32, got {self.features.dtype}.")
        for name, dtype in _ARRAY_DTYPES.items():
            if getattr(self, name).dtype != dtype:
                raise ValueError(f"Gallery array {name!r} must be {dtype}, got {getattr(self, name).dtype}.")
        expected_shapes = {
            "boxes": (num_patches, 4),
            "concept_ids": (num_patches,),
            "scores": (num_patches,),
            "image_index": (num_patches,),
            "context_offsets": (num_patches + 1,),
            "context_scores": self.context_concept_ids.shape,
            "concept_offsets": (self.num_concepts + 1,),
            "concept_patch_ids": (num_patches,),
        }
        for name, shape in expected_shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(
                    f"Gallery array {name!r} must have shape {shape}, got {getattr(self, name).shape}."
                )
        if self.context_offsets[-1] != len(self.context_concept_ids) or self.context_offsets[0] != 0:
            raise ValueError("context_offsets must start at 0 and end at the number of context entries.")
        if self.concept_offsets[-1] != num_patches or self.concept_offsets[0] != 0:
            raise ValueError("concept_offsets must start at 0 and end at the number of patches.")
        if len(self.image_paths) != len(self.image_ids):
            raise ValueError(f"Got {len(self.image_paths)} image paths for {len(self.image_ids)} images.")
        if len(self._concept_index) != len(self.concepts):
            raise ValueError("Concept names must be unique.")


# ---------------------------------------------------------------------------------------------------- helpers


def _read_only_view(array: np.ndarray) -> np.ndarray:
    # The arrays are shared with every caller of the accessors: views must not be able to corrupt them.
    view = array.view()
    view.flags.writeable = False
    return view


def _feature_dtype(feature_dtype: str) -> np.dtype:
    dtype = _FEATURE_DTYPES.get(str(feature_dtype))
    if dtype is None:
        raise ValueError(f"feature_dtype must be one of {sorted(_FEATURE_DTYPES)}, got {feature_dtype!r}.")
    return dtype


def _as_dtype(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value)
    dtype = _ARRAY_DTYPES[name]
    if array.dtype == dtype:
        return array
    if dtype.kind == "i" and array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {array.dtype}.")
    return array.astype(dtype)


def _check_names(concepts: list[str], image_ids: list[str], image_paths: Sequence[str | None] | None) -> None:
    for name in concepts:
        if not isinstance(name, str) or not name or normalize_concept(name) != name:
            raise ValueError(
                f"Concept name {name!r} is not normalized; pass normalize_concept(name) "
                f"({normalize_concept(name) if isinstance(name, str) else None!r})."
            )
    if len(set(concepts)) != len(concepts):
        raise ValueError("Concept names must be unique.")
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("Image ids must be unique.")
    if image_paths is not None and len(image_paths) != len(image_ids):
        raise ValueError(f"Got {len(image_paths)} image paths for {len(image_ids)} image ids.")


def _check_patch_arrays(
    arrays: dict[str, np.ndarray], num_patches: int, num_concepts: int, num_images: int
) -> None:
    for name, shape in (
        ("boxes", (num_patches, 4)),
        ("concept_ids", (num_patches,)),
        ("scores", (num_patches,)),
        ("image_index", (num_patches,)),
    ):
        if arrays[name].shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arrays[name].shape}.")
    if num_patches == 0:
        return
    _check_range("concept_ids", arrays["concept_ids"], 0, num_concepts - 1)
    _check_range("image_index", arrays["image_index"], 0, num_images - 1)
    _check_range("scores", arrays["scores"], 0.0, 1.0)
    boxes = arrays["boxes"]
    _check_range("boxes", boxes, 0.0, 1.0)
    if ((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).any():
        raise ValueError("boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2.")


def _check_range(name: str, array: np.ndarray, low: float, high: float) -> None:
    # Negated so that NaN fails.
    if array.size and not (array.min() >= low and array.max() <= high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got values in [{array.min()}, {array.max()}].")


def _check_context_arrays(arrays: dict[str, np.ndarray], num_patches: int, num_concepts: int) -> None:
    offsets = arrays["context_offsets"]
    concept_ids = arrays["context_concept_ids"]
    if offsets.shape != (num_patches + 1,) or concept_ids.ndim != 1:
        raise ValueError(f"context_offsets must have shape ({num_patches + 1},), got {offsets.shape}.")
    if arrays["context_scores"].shape != concept_ids.shape:
        raise ValueError("context_scores and context_concept_ids must have the same shape.")
    if offsets[0] != 0 or offsets[-1] != len(concept_ids) or (np.diff(offsets) < 0).any():
        raise ValueError("context_offsets must rise from 0 to the number of context entries.")
    if len(concept_ids):
        _check_range("context_concept_ids", concept_ids, 0, num_concepts - 1)
        _check_range("context_scores", arrays["context_scores"], 0.0, 1.0)
        own = np.repeat(arrays["concept_ids"], np.diff(offsets))
        if (own == concept_ids).any():
            raise ValueError("A patch's contextual concepts must not include its own concept.")


def _contexts_from_images(
    concept_ids: np.ndarray, scores: np.ndarray, image_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contextual concepts of every patch: the other concepts of its image, with their highest confidence.

    Vectorized over the whole corpus: O(P log P + K) time for `K` context entries.

    Returns:
        `(context_offsets (P + 1,) int64, context_concept_ids (K,) int32, context_scores (K,) float32)`, the
        concepts of each patch in ascending order.
    """
    num_patches = len(concept_ids)
    if num_patches == 0:
        return np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32)
    # One group per (image, concept), sorted by image then concept, with the highest confidence.
    order = np.lexsort((concept_ids, image_index))
    group_images, group_concepts = image_index[order], concept_ids[order]
    is_first = np.r_[
        True, (group_images[1:] != group_images[:-1]) | (group_concepts[1:] != group_concepts[:-1])
    ]
    group_starts = np.flatnonzero(is_first)
    group_scores = np.maximum.reduceat(scores[order], group_starts)
    group_images, group_concepts = group_images[group_starts], group_concepts[group_starts]
    # Groups of image m are [image_start[m], image_start[m + 1]).
    num_images = int(image_index.max()) + 1
    image_start = np.searchsorted(group_images, np.arange(num_images + 1))

    # Every patch takes all groups of its image but its own concept's (always present: exactly one).
    first_group = image_start[image_index].astype(np.int64)
    groups_per_patch = (image_start[image_index + 1] - first_group).astype(np.int64)
    total = int(groups_per_patch.sum())
    patch_first_entry = np.cumsum(groups_per_patch) - groups_per_patch
    group = np.arange(total, dtype=np.int64) + np.repeat(first_group - patch_first_entry, groups_per_patch)
    keep = group_concepts[group] != np.repeat(concept_ids, groups_per_patch)
    group = group[keep]
    context_offsets = np.concatenate([[0], np.cumsum(groups_per_patch - 1)]).astype(np.int64)
    return context_offsets, group_concepts[group].astype(np.int32), group_scores[group].astype(np.float32)


def _write_safetensors(path: str, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> None:
    """Writes arrays to a safetensors file, streaming them in chunks (no full copy in memory)."""
    # Larger items first keeps every array aligned to its item size.
    names = sorted(arrays, key=lambda name: (-arrays[name].dtype.itemsize, name))
    header: dict[str, Any] = {"__metadata__": dict(metadata)}
    offset = 0
    for name in names:
        array = arrays[name]
        dtype = array.dtype.newbyteorder("<")
        size = dtype.itemsize * int(np.prod(array.shape))
        header[name] = {
            "dtype": _SAFETENSORS_NAMES[dtype],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # the format pads the header with spaces
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        for name in names:
            array = arrays[name]
            if array.size == 0:
                continue  # nothing to write (e.g. no contextual concepts: every image has one concept)
            flat_rows = array.reshape(len(array), -1) if array.ndim else array.reshape(1, 1)
            row_bytes = max(flat_rows.shape[1] * array.dtype.itemsize, 1)
            rows_per_chunk = max(_WRITE_CHUNK_BYTES // row_bytes, 1)
            for start in range(0, len(flat_rows), rows_per_chunk):
                chunk = np.ascontiguousarray(
                    flat_rows[start : start + rows_per_chunk], dtype=array.dtype.newbyteorder("<")
                )
                file.write(memoryview(chunk).cast("B"))
        file.flush()
        os.fsync(file.fileno())


def _read_safetensors_header(path: str) -> tuple[dict[str, Any], int]:
    """Reads and checks the header of a safetensors file.

    Returns:
        `(header, data_start)`: the header dictionary and the byte offset of the data buffer.
    """
    file_size = os.path.getsize(path)
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path} is not a safetensors file (only {len(prefix)} bytes).")
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size > min(_MAX_HEADER_BYTES, file_size - 8):
            raise ValueError(
                f"{path} is corrupt: its header claims {header_size} bytes, the file has {file_size}."
            )
        try:
            header = json.loads(file.read(header_size).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path} is corrupt: its header is not valid JSON ({error}).") from error
    if not isinstance(header, dict):
        raise ValueError(f"{path} is corrupt: its header is not a JSON object.")
    data_start = 8 + header_size
    data_end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            raise ValueError(f"{path} is corrupt: array {name!r} has no valid data_offsets.")
        data_end = max(data_end, offsets[1])
    if data_start + data_end != file_size:
        raise ValueError(
            f"{path} is corrupt or truncated: the header describes {data_start + data_end} bytes, the file has "
            f"{file_size}."
        )
    return header, data_start


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as file:
            config = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is corrupt: not valid JSON ({error}).") from error
    if not isinstance(config, dict):
        raise ValueError(f"{path} is corrupt: not a JSON object.")
    version = config.get("format_version")
    if version != GALLERY_FORMAT_VERSION:
        raise ValueError(
            f"{path} has gallery format version {version!r}; this code reads version {GALLERY_FORMAT_VERSION}."
        )
    required = ("gallery_uid", "num_patches", "num_concepts", "num_images", "num_context_entries", "feature_dim",
                "feature_dtype", "concepts", "image_ids")  # fmt: skip
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"{path} is missing the keys {missing}.")
    if len(config["concepts"]) != config["num_concepts"] or len(config["image_ids"]) != config["num_images"]:
        raise ValueError(
            f"{path} is inconsistent: {len(config['concepts'])} concepts for num_concepts={config['num_concepts']}, "
            f"{len(config['image_ids'])} image ids for num_images={config['num_images']}."
        )
    if config["feature_dtype"] not in _FEATURE_DTYPES:
        raise ValueError(f"{path}: unsupported feature_dtype {config['feature_dtype']!r}.")
    return config


def _expected_layout(config: Mapping[str, Any]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """dtype and shape of every array implied by a gallery configuration."""
    num_patches, num_entries = config["num_patches"], config["num_context_entries"]
    shapes = {
        "features": (num_patches, config["feature_dim"]),
        "boxes": (num_patches, 4),
        "concept_ids": (num_patches,),
        "scores": (num_patches,),
        "image_index": (num_patches,),
        "context_offsets": (num_patches + 1,),
        "context_concept_ids": (num_entries,),
        "context_scores": (num_entries,),
        "concept_offsets": (config["num_concepts"] + 1,),
        "concept_patch_ids": (num_patches,),
    }
    dtypes = {"features": _FEATURE_DTYPES[config["feature_dtype"]], **_ARRAY_DTYPES}
    return {name: (dtypes[name], shapes[name]) for name in _ARRAY_NAMES}
