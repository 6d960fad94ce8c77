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
"""Data collators for downstream fine-tuning with `transformers.Trainer`: VQA v2 / GQA, NLVR2, retrieval.

The examples are rows of the datasets of `processing.downstream_readers` (dicts). Every collator holds a
[`VLMixerProcessor`] and a region store (a [`RegionStore`], or any mapping `image_id -> RegionFeatures`), looks
the regions of each example up by image id (always as a string: `RegionStore[int]` would read a row) and builds
image + text sequences `[CLS] text [SEP] [IMG] * num_regions` with `processor(text=..., regions=...)`. An image
missing from the store raises a `ValueError` naming the image id.

Output tensors (`B` examples; `L` the padded sequence length, `V` the padded region count, `D` the feature
width), the names of `VLMixerModel.forward`:

- `input_ids`, `attention_mask`, `token_type_ids`, `position_ids`: `(B, L)` int64;
- `visual_features` `(B, V, D)` float32 and `visual_boxes` `(B, V, 4)` float32 (normalized `x1, y1, x2, y2`).

[`DataCollatorForVQA`] adds `labels` (VQA soft scores `(B, num_labels)` float32, or GQA class ids `(B,)` int64);
[`DataCollatorForNLVR2`] gives every tensor a pair dimension (`(B, 2, L)`, `(B, 2, V, D)`, ...) and `labels`
`(B,)`; [`DataCollatorForImageTextRetrieval`] gives `2B` joint rows (positives, then sampled negatives) with
`labels` `(2B,)`, plus a text-only and an image-only view of the positives; [`DataCollatorForImageTextPairs`]
gives joint rows of arbitrary pairs, for scoring at evaluation time.

Trainer note: the collators read columns the model does not take (`question`, `image_id`, ...); train with
`TrainingArguments(remove_unused_columns=False)` so that `Trainer` passes them through.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import numpy as np
import torch

from .feature_extraction_vlmixer import RegionFeatures
from .processing_vlmixer import VLMixerProcessor


__all__ = [
    "MODEL_INPUT_KEYS",
    "DataCollatorForImageTextPairs",
    "DataCollatorForImageTextRetrieval",
    "DataCollatorForNLVR2",
    "DataCollatorForVQA",
    "lookup_regions",
]

#: The processor outputs the collators return, in order (the inputs of `VLMixerModel.forward`).
MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "visual_features",
    "visual_boxes",
)
_INT_KEYS = frozenset({"input_ids", "attention_mask", "token_type_ids", "position_ids"})
# Draws from the store for a negative when the whole batch shows one image (each draw hits that image with
# probability 1 / len(store) <= 1/2, so running out means a broken store).
_MAX_STORE_DRAWS = 64
_PROBLEM_TYPES = ("multi_label_classification", "single_label_classification")


def lookup_regions(region_store: Any, image_ids: Sequence[Any]) -> list[RegionFeatures]:
    """The region records of `image_ids` (converted to strings) from `region_store`.

    Args:
        region_store: A [`RegionStore`] or a mapping `image_id (str) -> RegionFeatures`.
        image_ids: One image id per example.

    Raises:
        ValueError: If an image id is not in the store (the message names it and the example), or the store
            returns something other than a [`RegionFeatures`].
    """
    records = []
    for index, image_id in enumerate(image_ids):
        if image_id is None:
            raise ValueError(f"Example {index} of the batch has no image id.")
        key = str(image_id)
        try:
            record = region_store[key]
        except KeyError:
            where = getattr(region_store, "path", None)
            store = f"the region store {where}" if where else "the region store"
            raise ValueError(
                f"Image {key!r} (example {index} of the batch) is not in {store}: extract or convert its features, "
                "or check that the dataset's image ids follow the store's naming."
            ) from None
        if not isinstance(record, RegionFeatures):
            raise ValueError(
                f"The region store returned a {type(record).__name__} for image {key!r}; expected RegionFeatures."
            )
        records.append(record)
    return records


def _field(example: Any, key: str, index: int) -> Any:
    if not isinstance(example, Mapping):
        raise ValueError(
            f"Example {index} of the batch is a {type(example).__name__}; expected a dict (a dataset row)."
        )
    if key not in example:
        raise ValueError(
            f"Example {index} of the batch has no {key!r} (it has {sorted(example)}); with Trainer, set "
            "TrainingArguments(remove_unused_columns=False) so that the dataset columns reach the collator."
        )
    return example[key]


def _to_torch(batch: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, torch.Tensor]:
    """The model inputs of a processor output as torch tensors (int64 ids, float32 visual), keys prefixed."""
    out = {}
    for key in MODEL_INPUT_KEYS:
        if key not in batch:
            continue
        dtype = np.int64 if key in _INT_KEYS else np.float32
        out[prefix + key] = torch.from_numpy(np.ascontiguousarray(batch[key], dtype=dtype))
    return out


@dataclass
class _DownstreamCollator:
    processor: VLMixerProcessor
    region_store: Any
    _: KW_ONLY
    text_key: str = "question"
    max_length: int | None = None

    def _joint(
        self, texts: list[str], records: list[RegionFeatures], prefix: str = ""
    ) -> dict[str, torch.Tensor]:
        batch = self.processor(text=texts, regions=records, max_length=self.max_length, return_tensors="np")
        return _to_torch(batch, prefix)

    def _texts(self, examples: Sequence[Any]) -> list[str]:
        return [_field(example, self.text_key, index) for index, example in enumerate(examples)]

    def _records(self, examples: Sequence[Any], key: str) -> list[RegionFeatures]:
        image_ids = [_field(example, key, index) for index, example in enumerate(examples)]
        return lookup_regions(self.region_store, image_ids)


def _optional_labels(examples: Sequence[Any], key: str) -> list[Any] | None:
    """The `key` of every example, `None` if no example has one; a mix raises."""
    present = [isinstance(example, Mapping) and example.get(key) is not None for example in examples]
    if not any(present):
        return None
    if not all(present):
        raise ValueError(
            f"Examples {[i for i, p in enumerate(present) if not p]} of the batch have no {key!r} while others "
            "have one: a batch is either all labelled or all unlabelled."
        )
    return [example[key] for example in examples]


@dataclass
class DataCollatorForVQA(_DownstreamCollator):
    """Collates VQA v2 ([`read_vqa_v2`]) or GQA ([`read_gqa`]) rows: question + image regions.

    Args:
        processor: The VLMixer processor.
        region_store: A [`RegionStore`] or a mapping `image_id -> RegionFeatures`.
        num_labels: Size of the answer vocabulary.
        problem_type: `"multi_label_classification"` (VQA v2: soft scores, BCE) or
            `"single_label_classification"` (GQA: one class, cross-entropy).
        text_key, image_key: The columns holding the question and the image id.
        max_length: Token budget of a sequence (text + regions); the processor's `tavp_max_length` by default.

    Returns (from `__call__`): `input_ids`, `attention_mask`, `token_type_ids`, `position_ids` `(B, L)` int64,
    `visual_features` `(B, V, D)` float32, `visual_boxes` `(B, V, 4)` float32 and, when the examples are
    labelled, `labels`:

    - multi-label: `(B, num_labels)` float32, the soft scores: row b holds `scores[k]` at column `labels[k]`
      of example b (the sparse `labels` / `scores` columns of [`read_vqa_v2`]), 0 elsewhere;
    - single-label: `(B,)` int64, the `label` column of [`read_gqa`] (or an int `labels`); -100 (an answer
      outside the vocabulary) is passed through, for the loss to ignore.

    Examples without labels (test splits) give a batch without `labels`.
    """

    num_labels: int
    problem_type: str = "multi_label_classification"
    _: KW_ONLY
    image_key: str = "image_id"

    def __post_init__(self) -> None:
        if self.problem_type not in _PROBLEM_TYPES:
            raise ValueError(f"problem_type must be one of {_PROBLEM_TYPES}, got {self.problem_type!r}.")
        if isinstance(self.num_labels, bool) or not isinstance(self.num_labels, int) or self.num_labels < 1:
            raise ValueError(
                f"num_labels must be a positive int (the answer vocabulary size), got {self.num_labels!r}."
            )

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self._joint(self._texts(examples), self._records(examples, self.image_key))
        if self.problem_type == "multi_label_classification":
            labels = self._soft_scores(examples)
        else:
            labels = self._class_ids(examples)
        if labels is not None:
            batch["labels"] = labels
        return batch

    def _soft_scores(self, examples: Sequence[Mapping[str, Any]]) -> torch.Tensor | None:
        ids = _optional_labels(examples, "labels")
        if ids is None:
            return None
        scores = _optional_labels(examples, "scores")
        if scores is None:
            raise ValueError(
                "The examples have 'labels' but no 'scores': multi_label_classification needs the soft scores "
                "(read_vqa_v2 with label2id writes both)."
            )
        target = torch.zeros(len(examples), self.num_labels, dtype=torch.float32)
        for row, (answer_ids, answer_scores) in enumerate(zip(ids, scores, strict=True)):
            answer_ids = np.asarray(answer_ids, dtype=np.int64).reshape(-1)
            answer_scores = np.asarray(answer_scores, dtype=np.float32).reshape(-1)
            if answer_ids.shape != answer_scores.shape:
                raise ValueError(
                    f"Example {row} of the batch has {answer_ids.size} labels but {answer_scores.size} scores."
                )
            if answer_ids.size and (answer_ids.min() < 0 or answer_ids.max() >= self.num_labels):
                raise ValueError(
                    f"Example {row} of the batch has the answer ids {answer_ids.tolist()}, outside "
                    f"[0, {self.num_labels}): the vocabulary and num_labels disagree."
                )
            target[row, torch.from_numpy(answer_ids)] = torch.from_numpy(answer_scores)
        return target

    def _class_ids(self, examples: Sequence[Mapping[str, Any]]) -> torch.Tensor | None:
        key = (
            "label"
            if any(isinstance(e, Mapping) and e.get("label") is not None for e in examples)
            else "labels"
        )
        labels = _optional_labels(examples, key)
        if labels is None:
            return None
        for row, label in enumerate(labels):
            if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
                raise ValueError(
                    f"Example {row} of the batch has the {key} {label!r}; expected an int class id."
                )
            if label != -100 and not 0 <= label < self.num_labels:
                raise ValueError(
                    f"Example {row} of the batch has the {key} {label}, outside [0, {self.num_labels}) (and not "
                    "-100, the ignored index)."
                )
        return torch.tensor([int(label) for label in labels], dtype=torch.long)


@dataclass
class DataCollatorForNLVR2(_DownstreamCollator):
    """Collates NLVR2 rows ([`read_nlvr2`]): one sentence, two images.

    Each example becomes two image + text sequences, the sentence with the left image and with the right image,
    padded together to one length and region count, so every tensor has a pair dimension (index 0 left,
    1 right): `input_ids`, `attention_mask`, `token_type_ids`, `position_ids` `(B, 2, L)` int64,
    `visual_features` `(B, 2, V, D)` float32, `visual_boxes` `(B, 2, V, 4)` float32, and with labelled examples
    `labels` `(B,)` int64 (1 = True). `tensor.flatten(0, 1)` gives the `(2B, ...)` rows the encoder takes,
    in the order left_0, right_0, left_1, right_1, ...

    Args:
        processor, region_store, max_length: as for [`DataCollatorForVQA`].
        text_key: The sentence column (`"sentence"`).
        left_image_key, right_image_key: The image id columns.
    """

    _: KW_ONLY
    text_key: str = "sentence"
    left_image_key: str = "left_image_id"
    right_image_key: str = "right_image_id"

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        texts = self._texts(examples)
        left = self._records(examples, self.left_image_key)
        right = self._records(examples, self.right_image_key)
        records = [record for pair in zip(left, right, strict=True) for record in pair]
        flat = self._joint([text for text in texts for _ in range(2)], records)
        batch = {key: value.reshape(len(examples), 2, *value.shape[1:]) for key, value in flat.items()}
        labels = _optional_labels(examples, "label")
        if labels is not None:
            for row, label in enumerate(labels):
                if isinstance(label, bool) or label not in (0, 1):
                    raise ValueError(f"Example {row} of the batch has the label {label!r}; expected 0 or 1.")
            batch["labels"] = torch.tensor([int(label) for label in labels], dtype=torch.long)
        return batch


@dataclass
class DataCollatorForImageTextPairs(_DownstreamCollator):
    """Collates arbitrary (caption, image id) pairs into joint image + text rows, for scoring them (e.g. every
    caption against every image at evaluation time). No negatives are added and no `labels` are returned.

    Returns `input_ids`, `attention_mask`, `token_type_ids`, `position_ids` `(B, L)` int64, `visual_features`
    `(B, V, D)` and `visual_boxes` `(B, V, 4)` float32.
    """

    _: KW_ONLY
    text_key: str = "caption"
    image_key: str = "image_id"

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return self._joint(self._texts(examples), self._records(examples, self.image_key))


@dataclass
class DataCollatorForImageTextRetrieval(_DownstreamCollator):
    """Collates positive (caption, image id) rows ([`read_karpathy`]) for image-text matching fine-tuning.

    For `B` examples it returns:

    1. the joint matching batch, `2B` rows: the `B` positive pairs, then `B` negatives, row `B + i` being
       caption `i` with a sampled image: `input_ids`, `attention_mask`, `token_type_ids`, `position_ids`
       `(2B, L)` int64, `visual_features` `(2B, V, D)` and `visual_boxes` `(2B, V, 4)` float32, `labels`
       `(2B,)` float32 (1 for the positives, 0 for the negatives);
    2. the text-only view of the `B` captions (`processor(text=...)`): `text_input_ids`,
       `text_attention_mask` `(B, Lt)` int64;
    3. the image-only view of the `B` images (`processor(regions=...)`: detected tags + regions):
       `image_input_ids`, `image_attention_mask`, `image_token_type_ids`, `image_position_ids` `(B, Li)` int64,
       `image_visual_features` `(B, Vi, D)`, `image_visual_boxes` `(B, Vi, 4)` float32.

    Row `i` of the text and image views is positive pair `i`.

    Negatives: caption `i` is paired with the image of another example of the batch whose image id differs
    from its own, drawn uniformly among those examples (so an image appearing twice in the batch is twice as
    likely). When every example of the batch shows the same image there is no such example: the negative
    image is then drawn uniformly from the whole region store (a row of a [`RegionStore`], a key of a mapping),
    redrawn while it is the positive image; a store holding that single image raises a `ValueError`.

    Seeding: the draws of a batch come from `numpy.random.default_rng([seed, epoch, *keys])`, where the keys
    are the examples' `idx` when every example has one (as in `processing.collators`), else a CRC-32 of each
    example's image id and caption. A batch therefore depends only on its examples, the seed and the epoch:
    the same in every process, data-loader worker and resumed run; set `epoch` to vary negatives across epochs.

    Args:
        processor, region_store, max_length: as for [`DataCollatorForVQA`] (`max_length` bounds the joint rows).
        seed: Seed of the negative sampling.
        epoch: Mixed into the seed; a training loop may set it at each epoch.
        text_key, image_key: The caption and image id columns.
    """

    seed: int = 0
    _: KW_ONLY
    epoch: int = 0
    text_key: str = "caption"
    image_key: str = "image_id"
    _store_keys: list[str] | None = field(default=None, init=False, repr=False)

    def batch_rng(self, examples: Sequence[Mapping[str, Any]]) -> np.random.Generator:
        """The generator of one batch (see the class docstring)."""
        indices = [example.get("idx") if isinstance(example, Mapping) else None for example in examples]
        if all(index is not None for index in indices):
            keys = [int(index) for index in indices]
        else:
            keys = [
                zlib.crc32(f"{_field(e, self.image_key, i)}\x00{_field(e, self.text_key, i)}".encode())
                for i, e in enumerate(examples)
            ]
        return np.random.default_rng([int(self.seed), int(self.epoch), *keys])

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        texts = self._texts(examples)
        image_ids = [str(_field(example, self.image_key, index)) for index, example in enumerate(examples)]
        records = lookup_regions(self.region_store, image_ids)
        negatives = self._negatives(image_ids, records, self.batch_rng(examples))

        batch = self._joint(texts + texts, records + negatives)
        size = len(examples)
        batch["labels"] = torch.cat([torch.ones(size), torch.zeros(size)]).to(torch.float32)
        text = self.processor(text=texts, return_tensors="np")
        batch["text_input_ids"] = torch.from_numpy(np.ascontiguousarray(text["input_ids"], dtype=np.int64))
        batch["text_attention_mask"] = torch.from_numpy(
            np.ascontiguousarray(text["attention_mask"], dtype=np.int64)
        )
        image = self.processor(regions=records, return_tensors="np")
        batch.update(_to_torch(image, prefix="image_"))
        return batch

    def _negatives(
        self, image_ids: list[str], records: list[RegionFeatures], rng: np.random.Generator
    ) -> list[RegionFeatures]:
        ids = np.asarray(image_ids, dtype=object)
        negatives = []
        for image_id in image_ids:
            candidates = np.flatnonzero(ids != image_id)
            if len(candidates):
                negatives.append(records[int(candidates[rng.integers(len(candidates))])])
            else:
                negatives.append(self._draw_from_store(image_id, rng))
        return negatives

    def _draw_from_store(self, image_id: str, rng: np.random.Generator) -> RegionFeatures:
        store = self.region_store
        size = len(store)
        if size < 2:
            raise ValueError(
                f"Every example of the batch shows image {image_id!r} and the region store holds no other image: "
                "no negative can be drawn."
            )
        if isinstance(store, Mapping) and self._store_keys is None:
            self._store_keys = [str(key) for key in store]
        for _ in range(_MAX_STORE_DRAWS):
            row = int(rng.integers(size))
            if isinstance(store, Mapping):
                if self._store_keys[row] != image_id:
                    return store[self._store_keys[row]]
            else:
                record = store[row]
                if str(record.image_id) != image_id:
                    return record
        raise ValueError(
            f"Could not draw a region-store image other than {image_id!r} in {_MAX_STORE_DRAWS} draws."
        )
