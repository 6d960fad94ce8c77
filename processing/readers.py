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
"""Readers of published region-feature formats, yielding [`RegionFeatures`] for a region store.

Each reader is an iterable of [`RegionFeatures`] (one per image, validated), so
`RegionStore.from_records(reader, path)` converts a feature dump into a region store
(`vlmixer convert-features` does it from the command line). The formats:

**VinVL / Oscar+ TSV** ([`VinVLTSVReader`]), two files:

- the features TSV (`features.tsv`), one image per line:
  `img_id<TAB>num_boxes<TAB>base64(float32[num_boxes x (D + 6)])`, with `D = 2048` for the VinVL
  ResNeXt-152 C4 detector (rows 2054 wide). Row `i` of the decoded array is region `i`: its first `D` values
  are the region feature and the last 6 its box, normalized by the image size:
  `(x1 / w, y1 / h, x2 / w, y2 / h, (x2 - x1) / w, (y2 - y1) / h)`.
- the predictions (labels) TSV, one image per line, in any order:
  `img_id<TAB>{"objects": [{"class": "dog", "rect": [x1, y1, x2, y2], "conf": 0.93}, ...],
  "image_h": 480, "image_w": 640}`. Object `i` is region `i` of the features row.

  The pixel boxes are the `rect`s; the 6 normalized values of each features row must agree with
  `rect / (w, h, w, h)` (and the last two with the box width and height) within `box_tolerance`, which
  catches files that do not belong together. Labels are the `class`es, scores the `conf`s.

**BUTD / LXMERT "obj36" TSV** ([`ButdTSVReader`]), one image per line with the 10 tab-separated fields
`img_id, img_h, img_w, objects_id, objects_conf, attrs_id, attrs_conf, num_boxes, boxes, features`
(no header; a first line starting with `img_id<TAB>img_h` is taken as one and skipped). `img_h`, `img_w` and
`num_boxes` are decimal integers; the others are base64 arrays: `objects_id` and `attrs_id` int64
`(num_boxes,)`, `objects_conf` and `attrs_conf` float32 `(num_boxes,)`, `boxes` float32 `(num_boxes, 4)`
pixel `(x1, y1, x2, y2)`, `features` float32 `(num_boxes, D)` (`D = 2048`). The label of a region is line
`objects_id` (0-based) of the objects vocabulary file when one is given (the Visual Genome
`objects_vocab.txt` of bottom-up-attention, 1600 lines; a line holding synonyms separated by commas, e.g.
`stop sign,stopsign`, gives its first name), else the class id as a string. Attributes are not read.

**A folder of `.npz` files** ([`NpzFolderReader`]), one per image (`np.savez`, read with
`allow_pickle=False`), with the keys

| key            | shape / type              | content                                                      |
|----------------|---------------------------|--------------------------------------------------------------|
| `features`     | `(N, D)` float            | region features                                              |
| `boxes`        | `(N, 4)` float            | `(x1, y1, x2, y2)` in pixels                                 |
| `labels`       | `(N,)` str (`<U` dtype)   | concept labels; save with `np.array(labels, dtype=str)`      |
| `scores`       | `(N,)` float              | confidences in `[0, 1]`                                      |
| `image_h`      | scalar int                | image height in pixels                                       |
| `image_w`      | scalar int                | image width in pixels                                        |
| `image_id`     | scalar str, *optional*    | defaults to the file name without `.npz`                     |
| `image_path`   | scalar str, *optional*    | where the image file is                                      |

Files are read in sorted order of their names.

**Corrupt input.** A bad row (invalid base64, a wrong feature width, a truncated row, a missing image size,
a repeated image id, an invalid record) raises a `ValueError` that names the file and the 1-based line
number (the file alone for `.npz`). With `skip_bad_rows=True` the row is skipped instead and recorded in
`reader.skipped` ([`SkippedRow`]: file, line, reason), filled while the reader is iterated.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .feature_extraction_vlmixer import RegionFeatures


__all__ = [
    "READERS",
    "ButdTSVReader",
    "NpzFolderReader",
    "RegionReader",
    "SkippedRow",
    "VinVLTSVReader",
    "read_objects_vocab",
]

VINVL_BOX_WIDTH = 6
BUTD_FIELDS = (
    "img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf", "num_boxes", "boxes",
    "features",
)  # fmt: skip


@dataclass(frozen=True)
class SkippedRow:
    """A row left out by a reader with `skip_bad_rows=True`.

    Attributes:
        path: The file.
        line: 1-based line number in `path`, or `None` when the row is the whole file (`.npz`).
        reason: What is wrong with it.
    """

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}, line {self.line}"
        return f"{where}: {self.reason}"


class _RowError(ValueError):
    """What is wrong with one row; turned into a `ValueError` naming the file and line, or a `SkippedRow`."""


class RegionReader:
    """Base class of the readers: an iterable of validated [`RegionFeatures`], one per image.

    Args:
        skip_bad_rows: Skip a corrupt row (recording it in `self.skipped`) instead of raising.
        feature_dim: The feature width `D` every row must have; by default that of the first good row.

    Attributes:
        skipped (`list[SkippedRow]`): The rows skipped by the last iteration.
        num_read (`int`): The records yielded by the last iteration.
    """

    format_name = "regions"
    default_detector = "unknown"

    def __init__(self, *, skip_bad_rows: bool = False, feature_dim: int | None = None) -> None:
        self.skip_bad_rows = skip_bad_rows
        self.feature_dim = feature_dim
        self.skipped: list[SkippedRow] = []
        self.num_read = 0

    def __iter__(self) -> Iterator[RegionFeatures]:
        self.skipped = []
        self.num_read = 0
        self._feature_dim = self.feature_dim
        self._seen: dict[str, str] = {}  # image id -> where it was read
        for record in self._read():
            self.num_read += 1
            yield record

    def _read(self) -> Iterator[RegionFeatures]:
        raise NotImplementedError

    def _bad_row(self, path: str | os.PathLike, line: int | None, reason: str) -> None:
        """Raises the `ValueError` of a bad row, or records it when skipping bad rows."""
        row = SkippedRow(os.fspath(path), line, reason)
        if not self.skip_bad_rows:
            raise ValueError(f"{row} (pass skip_bad_rows=True / --skip-bad-rows to skip bad rows)") from None
        self.skipped.append(row)

    def _finish(self, record: RegionFeatures, where: str) -> RegionFeatures:
        """Validates a record read at `where` and checks that its image id and feature width are new / agree."""
        try:
            record.validate(expected_feature_dim=self._feature_dim)
        except ValueError as error:
            raise _RowError(str(error)) from None
        if record.image_id in self._seen:
            raise _RowError(
                f"image id {record.image_id!r} repeats (first read at {self._seen[record.image_id]})"
            )
        self._seen[record.image_id] = where
        if self._feature_dim is None:
            self._feature_dim = int(record.features.shape[1])
        return record


def _decode(field: str, name: str, dtype: np.dtype) -> np.ndarray:
    """Decodes a base64 field into a 1-D array of `dtype` (read-only, no copy)."""
    try:
        raw = base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _RowError(f"`{name}` is not valid base64 ({error})") from None
    dtype = np.dtype(dtype)
    if len(raw) % dtype.itemsize:
        raise _RowError(
            f"`{name}` decodes to {len(raw)} bytes, not a whole number of {dtype.name} values "
            f"({dtype.itemsize} bytes each): truncated?"
        )
    return np.frombuffer(raw, dtype=dtype)


def _decode_matrix(field: str, name: str, num_boxes: int, width: int | None) -> np.ndarray:
    """Decodes a base64 float32 `(num_boxes, width)` array; `width=None` infers it from the length."""
    values = _decode(field, name, np.float32)
    if width is None:
        if num_boxes == 0 or values.size % num_boxes or values.size == 0:
            raise _RowError(
                f"`{name}` holds {values.size} float32 values, which is not num_boxes={num_boxes} rows of equal "
                "width"
            )
        width = values.size // num_boxes
    if values.size != num_boxes * width:
        per_row = f"{values.size / num_boxes:g} per region" if num_boxes else "for no region"
        raise _RowError(
            f"`{name}` holds {values.size} float32 values ({per_row}); expected num_boxes x width = "
            f"{num_boxes} x {width} = {num_boxes * width}"
        )
    return values.reshape(num_boxes, width)


def _parse_int(value: str, name: str, minimum: int) -> int:
    value = value.strip()
    if not value:
        raise _RowError(f"`{name}` is missing; expected an integer >= {minimum}")
    try:
        number = int(value)
    except ValueError:
        raise _RowError(f"`{name}` is {value!r}; expected an integer >= {minimum}") from None
    if number < minimum:
        raise _RowError(f"`{name}` is {number}; expected an integer >= {minimum}")
    return number


def _split_fields(line: str, names: tuple[str, ...]) -> list[str]:
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != len(names):
        raise _RowError(
            f"has {len(fields)} tab-separated field(s), expected {len(names)} ({', '.join(names)}): truncated or "
            "not this format?"
        )
    return fields


def read_objects_vocab(path: str | os.PathLike) -> list[str]:
    """Reads an objects vocabulary: one class per line, line `k` (0-based) naming class id `k`.

    A line holding synonyms separated by commas (`stop sign,stopsign`) gives its first name.

    Raises:
        ValueError: If a line is empty.
    """
    names = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            name = line.strip().split(",")[0].strip()
            if not name:
                raise ValueError(f"{path}, line {line_number}: empty class name in the objects vocabulary.")
            names.append(name)
    return names


class VinVLTSVReader(RegionReader):
    r"""Reads VinVL / Oscar+ region features: a features TSV and its predictions TSV (see the module docstring).

    The predictions TSV is indexed first (image id -> byte offset, one pass, no JSON parsed), then the features
    TSV is read line by line and each row is joined with its predictions line.

    Args:
        features_tsv: `img_id<TAB>num_boxes<TAB>base64(float32[num_boxes x (feature_dim + 6)])` lines.
        predictions_tsv: `img_id<TAB>{"objects": [{"class", "rect", "conf"}], "image_h", "image_w"}` lines.
        feature_dim: Width `D` of the features (2048 for VinVL); the rows are `D + 6` wide.
        box_tolerance: Largest difference allowed between the 6 normalized box values of a features row and
            the box computed from the predictions `rect` and the image size (in units of the image size).
        skip_bad_rows: Skip corrupt rows (recorded in `self.skipped`) instead of raising.
    """

    format_name = "vinvl"
    default_detector = "vinvl-x152c4"

    def __init__(
        self,
        features_tsv: str | os.PathLike,
        predictions_tsv: str | os.PathLike,
        *,
        feature_dim: int = 2048,
        box_tolerance: float = 0.01,
        skip_bad_rows: bool = False,
    ) -> None:
        super().__init__(skip_bad_rows=skip_bad_rows, feature_dim=feature_dim)
        self.features_tsv = os.fspath(features_tsv)
        self.predictions_tsv = os.fspath(predictions_tsv)
        self.box_tolerance = float(box_tolerance)

    def _index_predictions(self) -> dict[str, tuple[int, int]]:
        """image id -> (byte offset, line number) of its line in the predictions TSV."""
        index: dict[str, tuple[int, int]] = {}
        offset = 0
        with open(self.predictions_tsv, "rb") as file:
            for line_number, line in enumerate(file, start=1):
                image_id = line.split(b"\t", 1)[0].decode("utf-8", errors="replace").strip()
                if image_id:
                    if image_id in index:
                        self._bad_row(
                            self.predictions_tsv,
                            line_number,
                            f"image id {image_id!r} repeats (first at line {index[image_id][1]})",
                        )
                    else:
                        index[image_id] = (offset, line_number)
                offset += len(line)
        return index

    def _predictions(self, file, image_id: str, where: tuple[int, int]) -> tuple[dict[str, Any], int]:
        offset, line_number = where
        file.seek(offset)
        line = file.readline().decode("utf-8", errors="replace").rstrip("\r\n")
        fields = line.split("\t", 1)
        location = f"{self.predictions_tsv}, line {line_number}"
        if len(fields) != 2:
            raise _RowError(f"its predictions ({location}) have no JSON field: truncated?")
        try:
            predictions = json.loads(fields[1])
        except json.JSONDecodeError as error:
            raise _RowError(f"its predictions ({location}) are not valid JSON ({error})") from None
        if not isinstance(predictions, dict) or not isinstance(predictions.get("objects"), list):
            raise _RowError(f"its predictions ({location}) are not a JSON object with an `objects` list")
        for key in ("image_h", "image_w"):
            value = predictions.get(key)
            if value is None:
                raise _RowError(
                    f"its predictions ({location}) have no `{key}`; expected the image size in pixels"
                )
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value != int(value)
                or value <= 0
            ):
                raise _RowError(f"its predictions ({location}) have `{key}` = {value!r}; expected an int > 0")
        return predictions, line_number

    def _read(self) -> Iterator[RegionFeatures]:
        index = self._index_predictions()
        width = self.feature_dim + VINVL_BOX_WIDTH
        with (
            open(self.features_tsv, encoding="utf-8", errors="replace") as features_file,
            open(self.predictions_tsv, "rb") as predictions_file,
        ):
            for line_number, line in enumerate(features_file, start=1):
                if not line.strip():
                    continue
                try:
                    image_id, num_boxes, encoded = _split_fields(line, ("img_id", "num_boxes", "features"))
                    image_id = image_id.strip()
                    if not image_id:
                        raise _RowError("`img_id` is empty")
                    num_boxes = _parse_int(num_boxes, "num_boxes", 0)
                    rows = _decode_matrix(encoded, "features", num_boxes, width)
                    if image_id not in index:
                        raise _RowError(f"image id {image_id!r} has no line in {self.predictions_tsv}")
                    predictions, predictions_line = self._predictions(
                        predictions_file, image_id, index[image_id]
                    )
                    record = self._record(image_id, rows, predictions, predictions_line)
                    yield self._finish(record, f"{self.features_tsv}, line {line_number}")
                except _RowError as error:
                    self._bad_row(self.features_tsv, line_number, str(error))

    def _record(
        self, image_id: str, rows: np.ndarray, predictions: dict[str, Any], predictions_line: int
    ) -> RegionFeatures:
        location = f"{self.predictions_tsv}, line {predictions_line}"
        objects = predictions["objects"]
        if len(objects) != len(rows):
            raise _RowError(
                f"num_boxes is {len(rows)} but its predictions ({location}) list {len(objects)} objects"
            )
        try:
            labels = [obj["class"] for obj in objects]
            scores = np.asarray([obj["conf"] for obj in objects], dtype=np.float32)
            boxes = np.asarray([obj["rect"] for obj in objects], dtype=np.float32).reshape(len(objects), 4)
        except (KeyError, TypeError, ValueError) as error:
            raise _RowError(
                f"its predictions ({location}) have an object without a valid `class`, `conf` and 4-value `rect` "
                f"({type(error).__name__}: {error})"
            ) from None
        image_w, image_h = int(predictions["image_w"]), int(predictions["image_h"])
        if len(rows):
            normalized = rows[:, self.feature_dim :].astype(np.float64)
            expected = boxes.astype(np.float64) / np.array(
                [image_w, image_h, image_w, image_h], dtype=np.float64
            )
            expected = np.concatenate(
                [expected, expected[:, 2:3] - expected[:, 0:1], expected[:, 3:4] - expected[:, 1:2]], axis=1
            )
            error = np.abs(normalized - expected)
            if not (error <= self.box_tolerance).all():  # also catches NaN
                region = int(np.flatnonzero(~(error <= self.box_tolerance).all(axis=1))[0])
                raise _RowError(
                    f"region {region}: the normalized box {np.round(normalized[region], 4).tolist()} of the "
                    f"features row disagrees with rect {np.round(boxes[region], 2).tolist()} / image size "
                    f"{image_w}x{image_h} "
                    f"= {np.round(expected[region], 4).tolist()} from {location} (more than "
                    f"box_tolerance={self.box_tolerance:g}): do the two files belong together?"
                )
        return RegionFeatures(
            features=rows[:, : self.feature_dim],
            boxes=boxes,
            image_width=image_w,
            image_height=image_h,
            labels=labels,
            scores=scores,
            image_id=image_id,
        )


class ButdTSVReader(RegionReader):
    r"""Reads BUTD / LXMERT `obj36` TSV region features (see the module docstring for the fields).

    Args:
        path: The TSV file.
        objects_vocab: The objects vocabulary file (line `k` names class `k`), or a list of class names. Without
            it, labels are the class ids as strings (`"57"`).
        feature_dim: The feature width `D` every row must have; by default that of the first good row.
        skip_bad_rows: Skip corrupt rows (recorded in `self.skipped`) instead of raising.
    """

    format_name = "butd"
    default_detector = "butd-r101-vg"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        objects_vocab: str | os.PathLike | list[str] | None = None,
        feature_dim: int | None = None,
        skip_bad_rows: bool = False,
    ) -> None:
        super().__init__(skip_bad_rows=skip_bad_rows, feature_dim=feature_dim)
        self.path = os.fspath(path)
        if objects_vocab is not None and not isinstance(objects_vocab, list):
            objects_vocab = read_objects_vocab(objects_vocab)
        self.objects_vocab = objects_vocab

    def _label(self, class_id: int) -> str:
        if self.objects_vocab is None:
            return str(class_id)
        if not 0 <= class_id < len(self.objects_vocab):
            raise _RowError(
                f"`objects_id` {class_id} is outside the objects vocabulary "
                f"(classes 0..{len(self.objects_vocab) - 1})"
            )
        return self.objects_vocab[class_id]

    def _read(self) -> Iterator[RegionFeatures]:
        with open(self.path, encoding="utf-8", errors="replace") as file:
            for line_number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                if line_number == 1 and line.startswith("img_id\timg_h"):
                    continue  # a header line
                try:
                    fields = dict(zip(BUTD_FIELDS, _split_fields(line, BUTD_FIELDS), strict=True))
                    image_id = fields["img_id"].strip()
                    if not image_id:
                        raise _RowError("`img_id` is empty")
                    image_h = _parse_int(fields["img_h"], "img_h", 1)
                    image_w = _parse_int(fields["img_w"], "img_w", 1)
                    num_boxes = _parse_int(fields["num_boxes"], "num_boxes", 0)
                    objects_id = _decode(fields["objects_id"], "objects_id", np.int64)
                    objects_conf = _decode(fields["objects_conf"], "objects_conf", np.float32)
                    for name, array in (("objects_id", objects_id), ("objects_conf", objects_conf)):
                        if array.size != num_boxes:
                            raise _RowError(
                                f"`{name}` holds {array.size} values; expected num_boxes={num_boxes}"
                            )
                    boxes = _decode_matrix(fields["boxes"], "boxes", num_boxes, 4)
                    if num_boxes == 0:
                        features = np.zeros((0, self._feature_dim or 0), dtype=np.float32)
                        if self._feature_dim is None:
                            raise _RowError(
                                "has no region, so its feature width is unknown; pass feature_dim"
                            )
                    else:
                        features = _decode_matrix(
                            fields["features"], "features", num_boxes, self._feature_dim
                        )
                    record = RegionFeatures(
                        features=features,
                        boxes=boxes,
                        image_width=image_w,
                        image_height=image_h,
                        labels=[self._label(int(class_id)) for class_id in objects_id],
                        scores=objects_conf,
                        image_id=image_id,
                    )
                    yield self._finish(record, f"{self.path}, line {line_number}")
                except _RowError as error:
                    self._bad_row(self.path, line_number, str(error))


def _npz_scalar(value: np.ndarray, name: str, kind: str) -> Any:
    if value.shape != ():
        raise _RowError(f"`{name}` has shape {value.shape}; expected a scalar")
    if kind == "int":
        if value.dtype.kind not in "iuf" or not math.isfinite(float(value)) or float(value) != int(value):
            raise _RowError(f"`{name}` is {value.item()!r}; expected an integer number of pixels")
        return int(value)
    if value.dtype.kind == "S":
        return value.item().decode("utf-8")
    if value.dtype.kind != "U":
        raise _RowError(f"`{name}` has dtype {value.dtype}; expected a string")
    return str(value.item())


class NpzFolderReader(RegionReader):
    r"""Reads a folder of `.npz` files, one per image (see the module docstring for the keys).

    Args:
        folder: The folder; its `*.npz` files are read in sorted order (not recursively).
        feature_dim: The feature width `D` every file must have; by default that of the first good file.
        skip_bad_rows: Skip corrupt files (recorded in `self.skipped`, with `line=None`) instead of raising.
    """

    format_name = "npz"
    required_keys = ("features", "boxes", "labels", "scores", "image_h", "image_w")

    def __init__(
        self, folder: str | os.PathLike, *, feature_dim: int | None = None, skip_bad_rows: bool = False
    ) -> None:
        super().__init__(skip_bad_rows=skip_bad_rows, feature_dim=feature_dim)
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(
                f"{self.folder} is not a folder; expected a folder of .npz files (one per image)."
            )

    def _read(self) -> Iterator[RegionFeatures]:
        for path in sorted(self.folder.glob("*.npz")):
            try:
                yield self._finish(self._load(path), str(path))
            except _RowError as error:
                self._bad_row(path, None, str(error))

    def _load(self, path: Path) -> RegionFeatures:
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except ValueError as error:  # object arrays need pickle, which is never allowed here
            raise _RowError(f"cannot be read without pickle ({error}); save labels with dtype=str") from None
        except (OSError, EOFError, zipfile.BadZipFile, KeyError) as error:
            raise _RowError(f"is not a readable .npz file ({type(error).__name__}: {error})") from None
        missing = [key for key in self.required_keys if key not in arrays]
        if missing:
            raise _RowError(f"is missing the key(s) {missing}; expected {list(self.required_keys)}")
        labels = arrays["labels"]
        if labels.dtype.kind == "S":
            labels = np.char.decode(labels, "utf-8")
        if labels.dtype.kind != "U" or labels.ndim != 1:
            raise _RowError(
                f"`labels` has dtype {labels.dtype} and shape {labels.shape}; expected (N,) strings"
            )
        for key in ("features", "boxes", "scores"):
            if arrays[key].dtype.kind not in "iuf":
                raise _RowError(f"`{key}` has dtype {arrays[key].dtype}; expected a float array")
        image_id = _npz_scalar(arrays["image_id"], "image_id", "str") if "image_id" in arrays else path.stem
        image_path = (
            _npz_scalar(arrays["image_path"], "image_path", "str") if "image_path" in arrays else None
        )
        try:
            return RegionFeatures(
                features=arrays["features"],
                boxes=arrays["boxes"],
                image_width=_npz_scalar(arrays["image_w"], "image_w", "int"),
                image_height=_npz_scalar(arrays["image_h"], "image_h", "int"),
                labels=labels.tolist(),
                scores=arrays["scores"],
                image_id=image_id,
                image_path=image_path,
            )
        except ValueError as error:
            raise _RowError(str(error)) from None


#: Reader class of each `vlmixer convert-features --format`.
READERS: dict[str, type[RegionReader]] = {
    VinVLTSVReader.format_name: VinVLTSVReader,
    ButdTSVReader.format_name: ButdTSVReader,
    NpzFolderReader.format_name: NpzFolderReader,
}
