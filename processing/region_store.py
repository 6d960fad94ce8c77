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
"""The region store: the detector output of an image corpus, one memory-mapped `datasets` Arrow dataset.

Every reader of a feature format (`processing.readers`) and the feature extractor
(`processing.region_detector`) write one; the patch gallery is built from one (`vlmixer build-gallery`).
A store holds one row per image:

| column         | `datasets` feature                     | content                                            |
|----------------|----------------------------------------|----------------------------------------------------|
| `image_id`     | `Value("string")`                      | unique identifier of the image                     |
| `image_width`  | `Value("int32")`                       | image width in pixels                              |
| `image_height` | `Value("int32")`                       | image height in pixels                             |
| `features`     | `Array2D((None, D), float16/float32)`  | `(N, D)` region features                           |
| `boxes`        | `Array2D((None, 4), "float32")`        | `(N, 4)` boxes `(x1, y1, x2, y2)` in pixels        |
| `labels`       | `List(Value("string"))`                | `N` concept labels (detector class names)          |
| `scores`       | `List(Value("float32"))`               | `N` detector confidences in `[0, 1]`               |
| `image_path`   | `Value("string")`, nullable            | where the image file is, when known                |

On disk a store is a folder:

    store/
        region_store.json     # format version, feature width and dtype, detector, the committed shards
        shard-00000/          # a `Dataset.save_to_disk` folder (Arrow files + dataset_info.json + state.json)
        shard-00001/
        ...

Each shard is an ordinary `datasets` dataset (`datasets.load_from_disk("store/shard-00000")` opens it);
[`RegionStore.load`] opens every committed shard memory-mapped and concatenates them, so opening a store of
any size costs a few milliseconds per shard and reads no feature. [`RegionStore.__getitem__`] returns
[`RegionFeatures`] built from zero-copy numpy views of the mapped Arrow buffers (float16 features are cast to
float32, the dtype of [`RegionFeatures`]).

Writes are atomic at two levels:

- [`RegionStore.from_records`] builds a whole store under a temporary name beside `path` and renames it when
  every record was written: after a failure (a corrupt input row, an interrupt) nothing is left at `path`.
- [`RegionStoreWriter`] appends to a store, committing a shard at a time: a shard is written under a
  temporary name inside the store, renamed, and only then listed in `region_store.json` (itself replaced
  atomically). A crash loses the uncommitted records only, and reopening the store removes the leftovers.
  It is what makes feature extraction resumable. One writer at a time per store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.features.features import Array2DExtensionType
from datasets.table import InMemoryTable
from transformers.utils import logging

from conversion.checkpoint_io import write_directory_atomically

from .feature_extraction_vlmixer import RegionFeatures
from .patch_gallery import PatchGallery


logger = logging.get_logger(__name__)

__all__ = [
    "REGION_STORE_CONFIG_NAME",
    "REGION_STORE_FORMAT_VERSION",
    "RegionStore",
    "RegionStoreWriter",
    "build_gallery",
    "region_store_features",
]

REGION_STORE_CONFIG_NAME = "region_store.json"
REGION_STORE_FORMAT_VERSION = 1

_FEATURE_DTYPES = {"float16": np.dtype("float16"), "float32": np.dtype("float32")}
_SHARD_NAME = re.compile(r"^shard-(\d{5,})$")
_TMP_PREFIX = ".tmp-"
# A shard is committed early when its features reach this size, which bounds the writer's memory and keeps
# the Arrow int32 list offsets (at most 2**31 values per column chunk) far from overflowing.
_MAX_SHARD_FEATURE_BYTES = 512 * 1024 * 1024


def region_store_features(feature_dim: int, feature_dtype: str = "float16") -> datasets.Features:
    """The `datasets.Features` (schema) of a region store whose features are `feature_dim` wide.

    Args:
        feature_dim: Width `D` of the region features.
        feature_dtype: `"float16"` or `"float32"`, the dtype the features are stored in.

    Returns:
        The features, in column order (see the module docstring).
    """
    _check_feature_dtype(feature_dtype)
    if not isinstance(feature_dim, int) or isinstance(feature_dim, bool) or feature_dim <= 0:
        raise ValueError(f"feature_dim must be a positive int (the feature width D), got {feature_dim!r}.")
    return datasets.Features(
        {
            "image_id": datasets.Value("string"),
            "image_width": datasets.Value("int32"),
            "image_height": datasets.Value("int32"),
            "features": datasets.Array2D(shape=(None, feature_dim), dtype=feature_dtype),
            "boxes": datasets.Array2D(shape=(None, 4), dtype="float32"),
            "labels": datasets.List(datasets.Value("string")),
            "scores": datasets.List(datasets.Value("float32")),
            "image_path": datasets.Value("string"),
        }
    )


def _check_feature_dtype(feature_dtype: str) -> np.dtype:
    if feature_dtype not in _FEATURE_DTYPES:
        raise ValueError(
            f"feature_dtype must be one of {sorted(_FEATURE_DTYPES)} (the dtype of the stored features), got "
            f"{feature_dtype!r}."
        )
    return _FEATURE_DTYPES[feature_dtype]


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hides the `datasets` progress bars (one per shard saved or loaded), restoring the setting after."""
    was_disabled = datasets.utils.are_progress_bars_disabled()
    datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.utils.enable_progress_bars()


def _atomic_write_json(path: Path, content: dict[str, Any]) -> None:
    tmp_path = path.with_name(f"{_TMP_PREFIX}{path.name}")
    with open(tmp_path, "w", encoding="utf-8") as file:
        json.dump(content, file, indent=2, ensure_ascii=False)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp_path, path)


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / REGION_STORE_CONFIG_NAME
    if not config_path.is_file():
        raise ValueError(
            f"{path} is not a region store: it has no {REGION_STORE_CONFIG_NAME}. Write one with "
            "`RegionStore.from_records`, `vlmixer convert-features` or `vlmixer extract-features`."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_path} is corrupt: not valid JSON ({error}).") from error
    if not isinstance(config, dict) or config.get("format_version") != REGION_STORE_FORMAT_VERSION:
        version = config.get("format_version") if isinstance(config, dict) else None
        raise ValueError(
            f"{config_path} has region store format version {version!r}; this code reads version "
            f"{REGION_STORE_FORMAT_VERSION}."
        )
    missing = [key for key in ("feature_dim", "feature_dtype", "shards") if key not in config]
    if missing:
        raise ValueError(f"{config_path} is missing the keys {missing}.")
    _check_feature_dtype(config["feature_dtype"])
    return config


class RegionStore:
    r"""Detector output of an image corpus: one row per image, memory-mapped (see the module docstring).

    Open one with [`RegionStore.load`]; write one with [`RegionStore.from_records`], a reader of
    `processing.readers` (`vlmixer convert-features`) or the extractor (`vlmixer extract-features`).

    A store is a sequence of [`RegionFeatures`]: `len(store)` images, `store[i]` or `store["image id"]` one
    record, `for record in store` all of them in order, so `PatchGallery.build(store)` works. The underlying
    `datasets.Dataset` is `store.dataset` (for `.map`, `.filter`, `with_format("torch")`, ...).

    Example:

    ```python
    >>> store = RegionStore.load("coco-regions")
    >>> store
    RegionStore(path='coco-regions', num_images=123287, feature_dim=2048, feature_dtype='float16', ...)
    >>> record = store["000000391895"]
    >>> record.features.shape, record.boxes.shape
    ((50, 2048), (50, 4))
    ```
    """

    def __init__(self, path: str | os.PathLike, shards: Sequence[datasets.Dataset], config: dict[str, Any]):
        self.path = os.fspath(path)
        self.feature_dim: int = int(config["feature_dim"])
        self.feature_dtype: str = config["feature_dtype"]
        self.detector: str = config.get("detector", "unknown")
        self._config = config
        self._shards = list(shards)
        expected = region_store_features(self.feature_dim, self.feature_dtype)
        for shard in self._shards:
            if shard.features != expected:
                raise ValueError(
                    f"Region store {self.path}: a shard has the features {shard.features}, expected {expected}."
                )
        # Every record batch of every shard is a block; `_block_starts[k]` is the index of block k's first row.
        self._blocks: list[_Block] = []
        starts = [0]
        for shard in self._shards:
            for batch in shard.data.table.to_batches():
                if batch.num_rows:
                    self._blocks.append(_Block(batch, self.feature_dim))
                    starts.append(starts[-1] + batch.num_rows)
        self._block_starts = np.asarray(starts, dtype=np.int64)
        self._num_images = int(starts[-1])
        self._id_index: dict[str, int] | None = None  # built on the first lookup by image id

    # ------------------------------------------------------------------------------------------------ creation

    @classmethod
    def from_records(
        cls,
        records: Iterable[RegionFeatures],
        path: str | os.PathLike,
        *,
        feature_dtype: str = "float16",
        feature_dim: int | None = None,
        detector: str = "unknown",
        shard_size: int = 1024,
        overwrite: bool = False,
        show_progress: bool = False,
    ) -> RegionStore:
        """Writes a new store from records, atomically, and opens it.

        The store is written in a temporary folder beside `path` and renamed to `path` once every record is
        written. If anything fails (an invalid record, a corrupt input row raised by a reader, an interrupt),
        the temporary folder is removed and nothing is left at `path`.

        Args:
            records: One [`RegionFeatures`] per image, any iterable (a reader, a generator, a list). Each is
                validated; image ids must be unique.
            path: The store folder to create. It must not exist or be empty, unless `overwrite`.
            feature_dtype: `"float16"` (half the disk and page cache; features must fit, |x| < 65504) or
                `"float32"` (exact).
            feature_dim: Width `D` of the features; by default that of the first record. Needed to create an
                empty store.
            detector: Name of the detector that produced the features, recorded as provenance.
            shard_size: Images per shard (a shard is also cut when its features reach 512 MiB).
            overwrite: Replace an existing non-empty `path`.
            show_progress: Show a progress bar over the records.

        Returns:
            The new store, opened with [`RegionStore.load`].

        Raises:
            ValueError: If a record is invalid (the message names its image id), an image id repeats, the
                feature widths differ, a feature overflows float16, no record is given and `feature_dim` is
                not, or `path` is not empty.
        """

        def write(tmp_dir: Path) -> None:
            with RegionStoreWriter(
                tmp_dir,
                feature_dim=feature_dim,
                feature_dtype=feature_dtype,
                detector=detector,
                shard_size=shard_size,
                commit_on_error=False,
            ) as writer:
                progress = logging.tqdm(
                    records, disable=not show_progress, desc="Writing regions", unit="image"
                )
                for record in progress:
                    writer.add(record)

        write_directory_atomically(path, write, overwrite=overwrite)
        return cls.load(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RegionStore:
        """Opens a store, memory-mapped: no feature is read until a record is asked for.

        Args:
            path: The store folder.

        Returns:
            The store.

        Raises:
            ValueError: If `path` is not a region store, a shard listed in `region_store.json` is missing, or
                the shards disagree with the recorded schema or counts.
        """
        path = Path(path)
        config = _read_config(path)
        shards = []
        with _quiet_datasets():
            for entry in config["shards"]:
                shard_path = path / entry["name"]
                if not shard_path.is_dir():
                    raise ValueError(
                        f"Region store {path} is corrupt: the shard {entry['name']} listed in "
                        f"{REGION_STORE_CONFIG_NAME} is missing."
                    )
                shard = datasets.load_from_disk(str(shard_path), keep_in_memory=False)
                if len(shard) != entry["num_images"]:
                    raise ValueError(
                        f"Region store {path} is corrupt: shard {entry['name']} has {len(shard)} images, "
                        f"{REGION_STORE_CONFIG_NAME} says {entry['num_images']}."
                    )
                shards.append(shard)
        return cls(path, shards, config)

    # -------------------------------------------------------------------------------------------------- access

    def __len__(self) -> int:
        return self._num_images

    @property
    def num_images(self) -> int:
        """Number of images (rows) in the store."""
        return self._num_images

    @property
    def num_regions(self) -> int:
        """Total number of regions of all images."""
        return int(sum(entry["num_regions"] for entry in self._config["shards"]))

    @property
    def num_shards(self) -> int:
        """Number of committed shards."""
        return len(self._shards)

    @property
    def dataset(self) -> datasets.Dataset:
        """The whole store as one memory-mapped `datasets.Dataset` (the shards concatenated)."""
        if not self._shards:
            return datasets.Dataset.from_dict(
                {name: [] for name in region_store_features(self.feature_dim, self.feature_dtype)},
                features=region_store_features(self.feature_dim, self.feature_dtype),
            )
        return datasets.concatenate_datasets(self._shards) if len(self._shards) > 1 else self._shards[0]

    @property
    def image_ids(self) -> list[str]:
        """The image ids, in row order (read from the mapped `image_id` column; `O(num_images)`)."""
        return [image_id for block in self._blocks for image_id in block.image_ids.to_pylist()]

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and image_id in self._index()

    def index_of(self, image_id: str) -> int:
        """Row of the image `image_id`.

        The first lookup by id builds an `image_id -> row` dictionary (about 100 bytes per image); reading by
        row does not need it.

        Raises:
            KeyError: If the store has no such image.
        """
        try:
            return self._index()[image_id]
        except KeyError:
            raise KeyError(f"Region store {self.path} has no image with id {image_id!r}.") from None

    def _index(self) -> dict[str, int]:
        if self._id_index is None:
            self._id_index = {image_id: row for row, image_id in enumerate(self.image_ids)}
        return self._id_index

    def _locate(self, index: int) -> tuple[_Block, int]:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"Region store indices are ints or image id strings, got {type(index).__name__}.")
        index = int(index)
        if index < 0:
            index += self._num_images
        if not 0 <= index < self._num_images:
            raise IndexError(f"Index {index} out of range for a region store of {self._num_images} images.")
        block = int(np.searchsorted(self._block_starts, index, side="right")) - 1
        return self._blocks[block], index - int(self._block_starts[block])

    def get_features(self, index: int | str) -> np.ndarray:
        """The features of one image as stored, without a copy.

        Args:
            index: Row, or image id.

        Returns:
            Read-only `np.ndarray` of shape `(N, D)` and the store's `feature_dtype`, a view of the mapped file.
        """
        if isinstance(index, str):
            index = self.index_of(index)
        block, row = self._locate(index)
        return block.features(row)

    def __getitem__(self, index: int | str) -> RegionFeatures:
        """The record of one image.

        Args:
            index: Row (negative counts from the end), or image id.

        Returns:
            [`RegionFeatures`] with `features` `(N, D)` float32 (a read-only view of the file for a float32
            store, a cast copy for float16), `boxes` `(N, 4)` float32 pixels, `scores` `(N,)` float32.
        """
        if isinstance(index, str):
            index = self.index_of(index)
        block, row = self._locate(index)
        return block.record(row)

    def __iter__(self) -> Iterator[RegionFeatures]:
        for block in self._blocks:
            for row in range(block.num_rows):
                yield block.record(row)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(path={self.path!r}, num_images={self.num_images}, "
            f"feature_dim={self.feature_dim}, feature_dtype={self.feature_dtype!r}, detector={self.detector!r}, "
            f"num_shards={self.num_shards})"
        )


class _Block:
    """Zero-copy numpy views of one Arrow record batch of a store (offsets and flat values per column)."""

    def __init__(self, batch: pa.RecordBatch, feature_dim: int):
        self.num_rows = batch.num_rows
        self.feature_dim = feature_dim
        self.image_ids = batch.column("image_id")
        self.widths = batch.column("image_width").to_numpy()
        self.heights = batch.column("image_height").to_numpy()
        self.image_paths = batch.column("image_path")
        self.labels = batch.column("labels")
        self.feature_offsets, self.feature_values = self._array2d(batch.column("features"))
        self.box_offsets, self.box_values = self._array2d(batch.column("boxes"))
        scores = batch.column("scores")
        self.score_offsets = scores.offsets.to_numpy()
        self.score_values = scores.values.to_numpy(zero_copy_only=True)

    @staticmethod
    def _array2d(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        # Storage of an `Array2D((None, D))` column: list<list<value>>. Row i holds the inner lists
        # [outer[i], outer[i + 1]), whose values are [inner[outer[i]], inner[outer[i + 1]]).
        storage = column.storage if isinstance(column, pa.ExtensionArray) else column
        outer = storage.offsets.to_numpy()
        inner = storage.values.offsets.to_numpy()
        values = storage.values.values.to_numpy(zero_copy_only=True)
        return inner[outer], values

    def features(self, row: int) -> np.ndarray:
        start, end = self.feature_offsets[row], self.feature_offsets[row + 1]
        return self.feature_values[start:end].reshape(-1, self.feature_dim)

    def record(self, row: int) -> RegionFeatures:
        box_start, box_end = self.box_offsets[row], self.box_offsets[row + 1]
        score_start, score_end = self.score_offsets[row], self.score_offsets[row + 1]
        return RegionFeatures(
            features=self.features(row),
            boxes=self.box_values[box_start:box_end].reshape(-1, 4),
            image_width=int(self.widths[row]),
            image_height=int(self.heights[row]),
            labels=self.labels[row].as_py(),
            scores=self.score_values[score_start:score_end],
            image_id=self.image_ids[row].as_py(),
            image_path=self.image_paths[row].as_py(),
        )


class RegionStoreWriter:
    """Appends [`RegionFeatures`] to a region store, a committed shard at a time.

    Opens the store at `path` (creating it when `path` does not exist or is an empty folder), removes what an
    interrupted writer left behind (uncommitted shards, temporary files), and knows the image ids already
    stored, so a resumed job can skip them (`image_id in writer`). [`RegionStoreWriter.add`] buffers
    records; every `shard_size` images the buffer is written as a new shard and committed (see the module
    docstring). Use it as a context manager, or call [`RegionStoreWriter.close`].

    Args:
        path: The store folder.
        feature_dim: Width `D` of the features. Required to match an existing store; by default that of the
            store, or of the first record of a new one.
        feature_dtype: `"float16"` or `"float32"`; must match an existing store.
        detector: Detector name recorded in a new store (an existing store keeps its own).
        shard_size: Images per shard (also cut when its features reach 512 MiB).
        commit_on_error: When the `with` block ends with an exception, commit the buffered records (they were
            complete and valid when added) before it propagates, so an interrupted job resumes after them.
            [`RegionStore.from_records`] sets it to `False`, since its whole folder is discarded then.

    Raises:
        ValueError: If `path` is a non-empty folder that is not a region store, or its feature width or dtype
            differ from the ones asked for.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        feature_dim: int | None = None,
        feature_dtype: str = "float16",
        detector: str = "unknown",
        shard_size: int = 1024,
        commit_on_error: bool = True,
    ) -> None:
        self.path = Path(path)
        self.shard_size = int(shard_size)
        if self.shard_size <= 0:
            raise ValueError(f"shard_size must be a positive number of images, got {shard_size!r}.")
        self.commit_on_error = commit_on_error
        self._dtype = _check_feature_dtype(feature_dtype)
        if (self.path / REGION_STORE_CONFIG_NAME).is_file():
            self._config = _read_config(self.path)
            for name, value in (("feature_dtype", feature_dtype), ("feature_dim", feature_dim)):
                if value is not None and self._config[name] != value:
                    raise ValueError(
                        f"Region store {self.path} has {name}={self._config[name]!r}, but {name}={value!r} was "
                        "asked for; write to another store or pass the store's value."
                    )
            self._dtype = _FEATURE_DTYPES[self._config["feature_dtype"]]
            self._clean_up()
            self._image_ids = set(RegionStore.load(self.path).image_ids)
        else:
            if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                raise ValueError(
                    f"{self.path} exists and is not a region store (no {REGION_STORE_CONFIG_NAME}); choose a new "
                    "or empty folder."
                )
            self.path.mkdir(parents=True, exist_ok=True)
            self._config = {
                "format_version": REGION_STORE_FORMAT_VERSION,
                "feature_dim": feature_dim,
                "feature_dtype": feature_dtype,
                "detector": detector,
                "num_images": 0,
                "num_regions": 0,
                "shards": [],
            }
            if feature_dim is not None:
                region_store_features(feature_dim, feature_dtype)  # checks feature_dim
                _atomic_write_json(self.path / REGION_STORE_CONFIG_NAME, self._config)
            self._image_ids = set()
        self._buffer: list[RegionFeatures] = []
        self._buffer_bytes = 0
        self._closed = False
        self.num_added = 0

    @property
    def feature_dim(self) -> int | None:
        """Width `D` of the features (`None` until known, for a new store without `feature_dim`)."""
        return self._config["feature_dim"]

    def __contains__(self, image_id: object) -> bool:
        """Whether `image_id` is stored or buffered."""
        return image_id in self._image_ids

    def __len__(self) -> int:
        """Number of images stored or buffered."""
        return len(self._image_ids)

    def _clean_up(self) -> None:
        committed = {entry["name"] for entry in self._config["shards"]}
        for child in self.path.iterdir():
            orphan = _SHARD_NAME.match(child.name) is not None and child.name not in committed
            if orphan or child.name.startswith(_TMP_PREFIX):
                logger.warning(
                    f"Removing {child}, left by an interrupted writer of the region store {self.path}."
                )
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def add(self, record: RegionFeatures) -> None:
        """Validates a record and buffers it; commits a shard when the buffer is full.

        Raises:
            ValueError: If the record is invalid (the message names its image id and the field), has another
                feature width than the store, overflows float16, or its image id is already stored.
        """
        if self._closed:
            raise ValueError(f"The writer of the region store {self.path} is closed.")
        record.validate(expected_feature_dim=self.feature_dim)
        if record.image_id in self._image_ids:
            raise ValueError(
                f"Image id {record.image_id!r} is already in the region store {self.path}; image ids must be "
                "unique."
            )
        if self.feature_dim is None:
            self._config["feature_dim"] = int(record.features.shape[1])
            _atomic_write_json(self.path / REGION_STORE_CONFIG_NAME, self._config)
        if self._dtype == np.float16 and record.num_regions:
            largest = float(np.abs(record.features).max())
            if largest >= 65504.0:
                raise ValueError(
                    f"RegionFeatures(image_id={record.image_id!r}): features overflow float16 (largest magnitude "
                    f"{largest:g}); write the store with feature_dtype='float32'."
                )
        self._image_ids.add(record.image_id)
        self._buffer.append(record)
        self._buffer_bytes += record.features.size * self._dtype.itemsize
        self.num_added += 1
        if len(self._buffer) >= self.shard_size or self._buffer_bytes >= _MAX_SHARD_FEATURE_BYTES:
            self.commit()

    def commit(self) -> None:
        """Writes the buffered records as a new shard and commits it (no-op when the buffer is empty)."""
        if not self._buffer:
            return
        records, self._buffer, self._buffer_bytes = self._buffer, [], 0
        table = _records_to_table(records, self.feature_dim, self._config["feature_dtype"])
        features = region_store_features(self.feature_dim, self._config["feature_dtype"])
        taken = {entry["name"] for entry in self._config["shards"]}
        number = len(self._config["shards"])
        while f"shard-{number:05d}" in taken or (self.path / f"shard-{number:05d}").exists():
            number += 1
        name = f"shard-{number:05d}"
        tmp_dir = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{name}-", dir=self.path))
        try:
            with _quiet_datasets():
                dataset = datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features))
                dataset.save_to_disk(str(tmp_dir / "data"))
            os.replace(tmp_dir / "data", self.path / name)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        num_regions = int(sum(record.num_regions for record in records))
        self._config["shards"].append({"name": name, "num_images": len(records), "num_regions": num_regions})
        self._config["num_images"] = int(self._config.get("num_images", 0)) + len(records)
        self._config["num_regions"] = int(self._config.get("num_regions", 0)) + num_regions
        _atomic_write_json(self.path / REGION_STORE_CONFIG_NAME, self._config)

    def close(self) -> None:
        """Commits the buffered records. A new store without any record and without `feature_dim` is an error.

        Raises:
            ValueError: If the store is new, empty, and its feature width was never given.
        """
        if self._closed:
            return
        self.commit()
        self._closed = True
        if self.feature_dim is None:
            raise ValueError(
                f"Region store {self.path}: no record was written and feature_dim was not given; pass "
                "feature_dim to create an empty store."
            )

    def __enter__(self) -> RegionStoreWriter:
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if exc_type is None:
            self.close()
            return
        self._closed = True
        if self.commit_on_error and self._buffer:
            num_buffered = len(self._buffer)
            try:
                self.commit()
                logger.warning(
                    f"Committed the last {num_buffered} records added before the error to the region store "
                    f"{self.path}; a new writer continues after them."
                )
            except Exception as error:  # the original exception matters more
                logger.error(f"Could not commit the buffered records to {self.path}: {error}")


def _list_array(values: pa.Array, counts: np.ndarray) -> pa.ListArray:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def _array2d(rows: list[np.ndarray], width: int, dtype: str) -> pa.ExtensionArray:
    counts = np.asarray([len(row) for row in rows], dtype=np.int64)
    flat = np.concatenate([row.reshape(-1) for row in rows]) if rows else np.zeros(0, dtype=dtype)
    inner = _list_array(pa.array(flat.astype(dtype, copy=False)), np.full(int(counts.sum()), width))
    return pa.ExtensionArray.from_storage(
        Array2DExtensionType(shape=(None, width), dtype=dtype), _list_array(inner, counts)
    )


def _records_to_table(records: list[RegionFeatures], feature_dim: int, feature_dtype: str) -> pa.Table:
    """One Arrow table (the store schema) from validated records, built column by column from numpy."""
    counts = np.asarray([record.num_regions for record in records], dtype=np.int64)
    schema = region_store_features(feature_dim, feature_dtype).arrow_schema
    columns = {
        "image_id": pa.array([record.image_id for record in records], type=pa.string()),
        "image_width": pa.array([record.image_width for record in records], type=pa.int32()),
        "image_height": pa.array([record.image_height for record in records], type=pa.int32()),
        "features": _array2d([record.features for record in records], feature_dim, feature_dtype),
        "boxes": _array2d([record.boxes for record in records], 4, "float32"),
        "labels": _list_array(
            pa.array([label for record in records for label in record.labels], type=pa.string()), counts
        ),
        "scores": _list_array(
            pa.array(np.concatenate([record.scores for record in records]).astype(np.float32)), counts
        ),
        "image_path": pa.array([record.image_path for record in records], type=pa.string()),
    }
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


# ------------------------------------------------------------------------------------------ vlmixer build-gallery


def build_gallery(
    store: RegionStore | str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    feature_dtype: str = "float16",
    min_score: float = 0.0,
    detector: str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
) -> PatchGallery:
    """Builds the patch gallery of a region store and saves it (atomically) to `output_dir`.

    Args:
        store: A [`RegionStore`] or its folder.
        output_dir: Where to save the gallery (`PatchGallery.save_pretrained`); must not exist or be empty,
            unless `overwrite`.
        feature_dtype: Dtype of the gallery features, `"float16"` or `"float32"`.
        min_score: Regions with a lower confidence are left out of the gallery.
        detector: Detector name recorded in the gallery; by default the store's.
        overwrite: Replace a non-empty `output_dir`.
        show_progress: Show a progress bar.

    Returns:
        The `PatchGallery`, opened memory-mapped from `output_dir`.
    """
    if not isinstance(store, RegionStore):
        store = RegionStore.load(store)
    gallery = PatchGallery.build(
        store,
        feature_dtype=feature_dtype,
        min_score=min_score,
        detector=detector or store.detector,
        show_progress=show_progress,
    )
    write_directory_atomically(output_dir, gallery.save_pretrained, overwrite=overwrite)
    return PatchGallery.from_pretrained(output_dir)


def build_gallery_main(argv: list[str] | None = None) -> None:
    """`vlmixer build-gallery`: region store -> patch gallery."""
    parser = argparse.ArgumentParser(
        prog="vlmixer build-gallery",
        description="Build the patch gallery (the regions indexed by concept) of a region store.",
    )
    parser.add_argument("--store", required=True, help="The region store folder.")
    parser.add_argument("--output", "--output_dir", dest="output", required=True, help="The gallery folder.")
    parser.add_argument(
        "--feature-dtype",
        "--feature_dtype",
        dest="feature_dtype",
        default="float16",
        choices=sorted(_FEATURE_DTYPES),
        help="Dtype of the gallery features.",
    )
    parser.add_argument(
        "--min-score",
        "--min_score",
        dest="min_score",
        type=float,
        default=0.0,
        help="Leave out regions with a lower confidence.",
    )
    parser.add_argument("--detector", default=None, help="Detector name to record (default: the store's).")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output folder.")
    args = parser.parse_args(argv)
    gallery = build_gallery(
        args.store,
        args.output,
        feature_dtype=args.feature_dtype,
        min_score=args.min_score,
        detector=args.detector,
        overwrite=args.overwrite,
    )
    print(
        f"wrote a patch gallery of {gallery.num_patches} patches, {gallery.num_concepts} concepts, "
        f"{gallery.num_images} images to {args.output}"
    )
