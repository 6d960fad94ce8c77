"""Data collators for VLMixer pre-training: VALP (text with cross-modal CutMix) and TAVP (tags + regions).

Both mask 15% of the eligible positions BERT-style (80% `[MASK]`, 10% a random word piece, 10% kept).
Randomness is seeded per batch from `(seed, epoch, example indices)` when the examples carry an `idx`, so a
batch is collated identically whatever the data-loader worker, process or resume point.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .feature_extraction_vlmixer import RegionFeatures
from .processing_vlmixer import VLMixerProcessor


@dataclass
class MaskingPlan:
    """Where BERT-style masking acts: `chosen` positions, and among them which become `[MASK]` and which a
    random word piece (`random_ids`); the rest of `chosen` keep their token. All arrays `(batch, seq_len)`."""

    chosen: np.ndarray
    to_mask: np.ndarray
    to_random: np.ndarray
    random_ids: np.ndarray

    def apply(self, input_ids: np.ndarray, mask_token_id: int) -> np.ndarray:
        masked = input_ids.copy()
        masked[self.to_mask] = mask_token_id
        masked[self.to_random] = self.random_ids[self.to_random]
        return masked


def plan_masking(
    eligible: np.ndarray,
    rng: np.random.Generator,
    replaceable_ids: np.ndarray,
    mlm_probability: float = 0.15,
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
    at_least_one: bool = False,
) -> MaskingPlan:
    """Chooses each eligible position with probability `mlm_probability`, then splits the chosen positions
    80/10/10 into `[MASK]`, a random word piece from `replaceable_ids`, and kept.

    Args:
        eligible: `(batch, seq_len)` bool, the positions that may be masked.
        rng: the generator all draws come from (three uniform arrays, in a fixed order).
        replaceable_ids: word-piece ids a random replacement is drawn from (no special tokens).
        at_least_one: in a row with eligible positions but none chosen, choose the eligible position with
            the smallest draw (short tag sequences would otherwise often have nothing to predict).
    """
    draws = rng.random(eligible.shape)
    chosen = (draws < mlm_probability) & eligible
    if at_least_one:
        empty = eligible.any(axis=1) & ~chosen.any(axis=1)
        if empty.any():
            best = np.where(eligible, draws, np.inf).argmin(axis=1)
            chosen[np.flatnonzero(empty), best[empty]] = True
    decision = rng.random(eligible.shape)
    random_ids = replaceable_ids[rng.integers(0, len(replaceable_ids), size=eligible.shape)]
    to_mask = chosen & (decision < mask_ratio)
    to_random = chosen & (decision >= mask_ratio) & (decision < mask_ratio + random_ratio)
    return MaskingPlan(chosen, to_mask, to_random, random_ids)


def region_features_from_example(example: Any) -> RegionFeatures:
    """A [`RegionFeatures`] from a region-store row (a mapping with `features`, `boxes`, `labels`, `scores`,
    `image_width`, `image_height`, `image_id` and optionally `image_path`), or the record itself."""
    if isinstance(example, RegionFeatures):
        return example
    if not isinstance(example, Mapping):
        raise ValueError(
            f"Expected a RegionFeatures record or a region-store row (a mapping), got {type(example)}."
        )
    missing = [
        key
        for key in ("features", "boxes", "labels", "scores", "image_width", "image_height", "image_id")
        if key not in example
    ]
    if missing:
        raise ValueError(f"Region-store row is missing the fields {missing}.")
    return RegionFeatures(
        features=np.asarray(example["features"], dtype=np.float32).reshape(len(example["labels"]), -1),
        boxes=np.asarray(example["boxes"], dtype=np.float32).reshape(-1, 4),
        image_width=int(example["image_width"]),
        image_height=int(example["image_height"]),
        labels=list(example["labels"]),
        scores=np.asarray(example["scores"], dtype=np.float32),
        image_id=str(example["image_id"]),
        image_path=example.get("image_path"),
    )


@dataclass
class _SeededCollator:
    processor: VLMixerProcessor
    mlm_probability: float = 0.15
    seed: int = 0
    epoch: int = 0
    _fallback_rng: np.random.Generator | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}.")
        tokenizer = self.processor.tokenizer
        special = set(tokenizer.all_special_ids) | {self.processor.image_token_id}
        self._replaceable_ids = np.array(
            [i for i in range(len(tokenizer)) if i not in special], dtype=np.int64
        )
        self._special_ids = np.array(sorted(special), dtype=np.int64)

    def batch_rng(self, examples: Sequence[Any]) -> np.random.Generator:
        """The generator of one batch: from `(seed, epoch, idx...)` when every example has an `idx`."""
        indices = [example.get("idx") if isinstance(example, Mapping) else None for example in examples]
        if all(index is not None for index in indices):
            return np.random.default_rng([self.seed, self.epoch, *map(int, indices)])
        if self._fallback_rng is None:
            self._fallback_rng = np.random.default_rng(self.seed)
        return self._fallback_rng

    def _eligible(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return (attention_mask == 1) & ~np.isin(input_ids, self._special_ids)


@dataclass
class DataCollatorForVALP(_SeededCollator):
    """Collates text examples (`{"text": str, "idx": int}`) into VALP batches for [`VLMixerForPreTraining`].

    Per batch: cross-modal CutMix gives the mixed sentence S and the aligned text T; 15% of the positions of
    S (words and visual slots; not special tokens) are chosen and masked 80/10/10, the same positions and
    decisions applied to T; `labels` hold the word pieces of T at the chosen positions and at every visual
    slot. A masked or randomized slot stops being a slot, and its visual row is dropped.

    Returns tensors `input_ids` (S^mask), `text_input_ids` (T^mask), `attention_mask`, `token_type_ids`,
    `position_ids`, `visual_features`, `visual_boxes` and `labels`.
    """

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        texts = [example["text"] if isinstance(example, Mapping) else example for example in examples]
        rng = self.batch_rng(examples)
        batch = self.processor(text=texts, cutmix=True, seed=rng, return_tensors="np")
        mixed, text = batch["input_ids"], batch["text_input_ids"]
        image_token_id = self.processor.image_token_id
        slots = mixed == image_token_id
        plan = plan_masking(
            self._eligible(text, batch["attention_mask"]), rng, self._replaceable_ids, self.mlm_probability
        )
        mask_token_id = self.processor.tokenizer.mask_token_id
        # A chosen slot that is kept stays a slot; one turned into [MASK] or a random word loses its patch.
        mixed_masked = plan.apply(mixed, mask_token_id)
        text_masked = plan.apply(text, mask_token_id)
        labels = np.where(plan.chosen | slots, text, -100)

        kept = mixed_masked == image_token_id
        features, boxes = _keep_visual_rows(batch["visual_features"], batch["visual_boxes"], slots, kept)
        return {
            "input_ids": torch.from_numpy(mixed_masked),
            "text_input_ids": torch.from_numpy(text_masked),
            "attention_mask": torch.from_numpy(batch["attention_mask"]),
            "token_type_ids": torch.from_numpy(batch["token_type_ids"]),
            "position_ids": torch.from_numpy(batch["position_ids"]),
            "visual_features": torch.from_numpy(features),
            "visual_boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(labels),
        }


@dataclass
class DataCollatorForTAVP(_SeededCollator):
    """Collates region records (or region-store rows with an `idx`) into TAVP batches: the detected tags as
    text plus the regions; 15% of the tag word pieces are masked 80/10/10 and predicted with the regions
    visible (`tag_labels`). Returns `input_ids`, `attention_mask`, `token_type_ids`, `position_ids`,
    `visual_features`, `visual_boxes` and `tag_labels`."""

    def __call__(self, examples: Sequence[Any]) -> dict[str, torch.Tensor]:
        rng = self.batch_rng(examples)
        records = [region_features_from_example(example) for example in examples]
        batch = self.processor(regions=records, return_tensors="np")
        input_ids = batch["input_ids"]
        tags = self._eligible(input_ids, batch["attention_mask"]) & (batch["token_type_ids"] == 1)
        plan = plan_masking(tags, rng, self._replaceable_ids, self.mlm_probability, at_least_one=True)
        masked = plan.apply(input_ids, self.processor.tokenizer.mask_token_id)
        tag_labels = np.where(plan.chosen, input_ids, -100)
        return {
            "input_ids": torch.from_numpy(masked),
            "attention_mask": torch.from_numpy(batch["attention_mask"]),
            "token_type_ids": torch.from_numpy(batch["token_type_ids"]),
            "position_ids": torch.from_numpy(batch["position_ids"]),
            "visual_features": torch.from_numpy(
                np.ascontiguousarray(batch["visual_features"], dtype=np.float32)
            ),
            "visual_boxes": torch.from_numpy(np.ascontiguousarray(batch["visual_boxes"], dtype=np.float32)),
            "tag_labels": torch.from_numpy(tag_labels),
        }


def _keep_visual_rows(
    features: np.ndarray, boxes: np.ndarray, slots: np.ndarray, kept: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drops the visual rows of slots that masking removed, keeping rows aligned with the remaining slots.

    Args:
        features: `(batch, rows, dim)`; row r of sequence b belongs to the r-th slot of `slots[b]`.
        slots: `(batch, seq_len)` the slots before masking; `kept`: those still slots after masking.
    """
    counts = kept.sum(axis=1)
    num_rows = int(counts.max()) if len(counts) else 0
    out_features = np.zeros((features.shape[0], num_rows, features.shape[2]), dtype=np.float32)
    out_boxes = np.zeros((boxes.shape[0], num_rows, 4), dtype=np.float32)
    for row in range(slots.shape[0]):
        keep_rows = kept[row][slots[row]]  # per original slot, in order: is it still a slot?
        out_features[row, : counts[row]] = features[row, : len(keep_rows)][keep_rows]
        out_boxes[row, : counts[row]] = boxes[row, : len(keep_rows)][keep_rows]
    return out_features, out_boxes
