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
"""VLMixer processor: tokenizer + region-feature extractor + (optionally) cross-modal CutMix.

One `__call__` produces model inputs for the three kinds of sequence VLMixer reads, with the names of
`VLMixerModel.forward` (`input_ids`, `attention_mask`, `token_type_ids`, `position_ids`, `visual_features`,
`visual_boxes`):

(a) image + text (+ tags): `[CLS] text [SEP] (tags [SEP]) [IMG] * num_regions` — the regions appended as
    visual slots after the text, all sharing one position id, segment 1 for tags and regions;
(b) text with CMC (`cutmix=True`): the mixed sentence S as `input_ids` (visual slots inline, each keeping the
    position of the sub-word it replaced) and the aligned text T as `text_input_ids`;
(c) tags + regions (TAVP): `[CLS] tags [SEP] [IMG] * num_regions`, tags read from the detector labels when
    not given.

This module is shipped as Hub remote code: it imports only numpy, torch, transformers and its siblings.
"""

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file

from .cross_modal_cutmix import CrossModalCutMix
from .feature_extraction_vlmixer import RegionFeatures, VLMixerRegionFeatureExtractor
from .patch_gallery import GALLERY_CONFIG_NAME, PatchGallery
from .tokenization import DEFAULT_IMAGE_TOKEN, check_image_token


GALLERY_FOLDER = "gallery"


class VLMixerProcessor(ProcessorMixin):
    r"""Turns raw text and detector output into VLMixer inputs.

    Args:
        feature_extractor ([`VLMixerRegionFeatureExtractor`]): validates, selects, normalizes and pads regions.
        tokenizer (fast tokenizer): a BERT-style tokenizer with the visual placeholder as a special token.
        gallery ([`PatchGallery`], *optional*): the patches cross-modal CutMix draws from (needed for `cutmix=True`).
        image_token (`str`, defaults to `"[IMG]"`): the visual placeholder token.
        r_cmc (`float`, defaults to 0.5): probability that a grounded word is replaced by a patch.
        r_ctx (`float`, defaults to 0.5): weight of the contextual concepts in the patch sampling.
        num_shots (`int`, defaults to 15): candidate patches per concept (the highest `p_i`).
        valp_max_length (`int`, defaults to 80): token budget of text and CMC sequences.
        tavp_max_length (`int`, defaults to 100): token budget of tag + region sequences (and image + text).
    """

    def __init__(
        self,
        feature_extractor: VLMixerRegionFeatureExtractor | None = None,
        tokenizer=None,
        gallery: PatchGallery | None = None,
        image_token: str = DEFAULT_IMAGE_TOKEN,
        r_cmc: float = 0.5,
        r_ctx: float = 0.5,
        num_shots: int = 15,
        valp_max_length: int = 80,
        tavp_max_length: int = 100,
        **kwargs,
    ):
        if tokenizer is None or not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                "VLMixerProcessor needs a fast tokenizer (word alignment comes from its encodings)."
            )
        if image_token not in tokenizer.get_vocab():
            check_image_token(tokenizer, image_token, -1)  # raises the explanatory error
        self.image_token = image_token
        self.image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        check_image_token(tokenizer, image_token, self.image_token_id)
        self.r_cmc, self.r_ctx, self.num_shots = r_cmc, r_ctx, num_shots
        self.valp_max_length, self.tavp_max_length = valp_max_length, tavp_max_length
        super().__init__(feature_extractor, tokenizer)
        self.gallery = None
        self.cutmix = None
        if gallery is not None:
            self.set_gallery(gallery)

    def set_gallery(self, gallery: PatchGallery | None) -> None:
        """Uses `gallery` for cross-modal CutMix; its feature width must match the feature extractor's. `None`
        drops the gallery (fine-tuned checkpoints do not need it)."""
        if gallery is None:
            self.gallery = self.cutmix = None
            return
        if gallery.feature_dim != self.feature_extractor.feature_dim:
            raise ValueError(
                f"The patch gallery holds {gallery.feature_dim}-d features, but the feature extractor (and so "
                f"the model) expects feature_dim={self.feature_extractor.feature_dim}."
            )
        self.gallery = gallery
        self.cutmix = CrossModalCutMix(gallery, r_cmc=self.r_cmc, r_ctx=self.r_ctx, num_shots=self.num_shots)

    def check_model_config(self, config) -> None:
        """Raises `ValueError` unless this processor's placeholder id and feature width match `config`."""
        check_image_token(self.tokenizer, self.image_token, config.image_token_id)
        if config.visual_feature_dim != self.feature_extractor.feature_dim:
            raise ValueError(
                f"The feature extractor produces {self.feature_extractor.feature_dim}-d features, but the model "
                f"expects config.visual_feature_dim={config.visual_feature_dim}."
            )

    # ---------------------------------------------------------------------------------------------------
    # __call__
    # ---------------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        regions: RegionFeatures | Sequence[RegionFeatures] | None = None,
        tags: str | Sequence[str] | None = None,
        cutmix: bool = False,
        max_length: int | None = None,
        seed: int | np.random.Generator | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Builds a padded batch of model inputs.

        Args:
            text: one sentence or a batch of sentences.
            regions: the detector output of one image per sentence (or per tag string).
            tags: the detected tags as text, one string per image; read from the region labels (distinct, in
                order of confidence) when `regions` are given without text or tags.
            cutmix: apply cross-modal CutMix to `text` (needs a gallery; no `regions`).
            max_length: the token budget, defaults to `valp_max_length` for text and CMC, `tavp_max_length`
                when regions are appended. Text is truncated; regions are never dropped here (the feature
                extractor's `max_regions` bounds them).
            seed: seed or `numpy.random.Generator` of cross-modal CutMix.
            return_tensors: `"pt"`, `"np"` or `None` (lists).

        Returns:
            A `BatchFeature` with `input_ids`, `attention_mask`, `token_type_ids`, `position_ids` of shape
            `(batch, seq_len)`, `visual_features` `(batch, num_rows, feature_dim)` and `visual_boxes`
            `(batch, num_rows, 4)` (row `r` of sequence `b` is its `r`-th visual slot), and with `cutmix`
            also `text_input_ids` (T, aligned with `input_ids` = S).
        """
        if kwargs:
            raise ValueError(f"Unexpected arguments for VLMixerProcessor: {sorted(kwargs)}.")
        texts = self._as_batch(text, "text")
        tag_texts = self._as_batch(tags, "tags")
        records = (
            [regions]
            if isinstance(regions, RegionFeatures)
            else (list(regions) if regions is not None else None)
        )
        if records is not None and len(records) == 0:
            raise ValueError("regions is an empty list; expected one RegionFeatures record per image.")

        if cutmix:
            if texts is None or records is not None or tag_texts is not None:
                raise ValueError("cutmix=True takes text only: CMC draws its patches from the gallery.")
            return self._cutmix(texts, max_length or self.valp_max_length, seed, return_tensors)
        if records is None:
            if texts is None:
                raise ValueError(
                    "Give text, regions (with optional text and tags), or text with cutmix=True."
                )
            if tag_texts is not None:
                raise ValueError("tags describe an image: pass the image's regions as well.")
            return self._text_only(texts, max_length or self.valp_max_length, return_tensors)
        return self._with_regions(
            texts, tag_texts, records, max_length or self.tavp_max_length, return_tensors
        )

    @staticmethod
    def _as_batch(value, name: str) -> list[str] | None:
        if value is None:
            return None
        batch = [value] if isinstance(value, str) else list(value)
        if not batch:
            raise ValueError(f"{name} is an empty list; expected at least one string.")
        for index, item in enumerate(batch):
            if not isinstance(item, str):
                raise ValueError(f"{name}[{index}] is a {type(item).__name__}; expected a string.")
            if not item.strip():
                raise ValueError(f"{name}[{index}] is empty; expected a non-empty string.")
        return batch

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _text_only(self, texts: list[str], max_length: int, return_tensors) -> BatchFeature:
        encoded = self.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        rows = [_Row(ids, [0] * len(ids), list(range(len(ids)))) for ids in encoded]
        return self._pad(rows, None, return_tensors)

    def _with_regions(self, texts, tag_texts, records, max_length: int, return_tensors) -> BatchFeature:
        for name, batch in (("text", texts), ("tags", tag_texts)):
            if batch is not None and len(batch) != len(records):
                raise ValueError(
                    f"Got {len(batch)} {name} entries for {len(records)} region records; expected one per image."
                )
        visual = self.feature_extractor(records, return_tensors="np")
        num_regions = visual["visual_mask"].sum(axis=1).tolist()
        if texts is None and tag_texts is None:
            tag_texts = [self._tags_from_labels(labels) for labels in visual["region_labels"]]
        text_ids = self._tokenize(texts) if texts is not None else [None] * len(records)
        tag_ids = self._tokenize(tag_texts) if tag_texts is not None else [None] * len(records)

        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        rows = []
        for index, (words, tags, regions) in enumerate(zip(text_ids, tag_ids, num_regions, strict=True)):
            special = 1 + (words is not None) + (tags is not None)
            budget = max_length - regions - special
            if budget < 0:
                raise ValueError(
                    f"Sequence {index} has {regions} regions, which with its special tokens exceed max_length="
                    f"{max_length}; lower the feature extractor's max_regions or raise max_length."
                )
            words, tags = _truncate_pair(words, tags, budget)
            ids, segments = [cls_id], [0]
            if words is not None:
                ids += words + [sep_id]
                segments += [0] * (len(words) + 1)
            if tags is not None:
                ids += tags + [sep_id]
                segments += [1] * (len(tags) + 1)
            positions = list(range(len(ids)))
            # Appended regions are an unordered set placed by their boxes: one shared position.
            ids += [self.image_token_id] * regions
            segments += [1] * regions
            positions += [len(positions)] * regions
            rows.append(_Row(ids, segments, positions))
        features = visual["visual_features"]
        boxes = visual["visual_boxes"]
        return self._pad(rows, (features, boxes), return_tensors)

    @staticmethod
    def _tags_from_labels(labels: list[str]) -> str:
        return " ".join(dict.fromkeys(label.strip() for label in labels)) or "none"

    # ---------------------------------------------------------------------------------------------------
    # Image + text rows from pre-tokenized pieces (retrieval: every caption against every image)
    # ---------------------------------------------------------------------------------------------------

    def word_pieces(self, text: str | Sequence[str]) -> list[list[int]]:
        """The word-piece ids of each sentence as the image + text rows hold them: no special tokens, not
        truncated (`joint_inputs` truncates per pair, as `__call__` does)."""
        return self._tokenize(self._as_batch(text, "text"))

    def joint_inputs(
        self,
        word_ids: Sequence[Sequence[int]],
        region_features: Sequence[np.ndarray],
        region_boxes: Sequence[np.ndarray],
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> BatchFeature:
        """Image + text rows `[CLS] text [SEP] [IMG] * num_regions` from pre-tokenized pieces.

        Row `b` pairs the sentence `word_ids[b]` with the regions `region_features[b]` / `region_boxes[b]`; the
        result equals `self(text=texts, regions=records, max_length=max_length)` when `word_ids` is
        `self.word_pieces(texts)` and the regions are the feature extractor's output for `records` (the kept
        rows of `visual_features` / `visual_boxes`, in order), so a caption is tokenized and an image's regions
        are selected and normalized once however many pairs they take part in. Built with array operations,
        no per-token Python loop.

        Args:
            word_ids: `B` lists of word-piece ids (no special tokens), e.g. from `word_pieces`.
            region_features: `B` arrays `(num_regions_b, feature_dim)`: the selected regions of one image each.
            region_boxes: `B` arrays `(num_regions_b, 4)`: their boxes, normalized to [0, 1].
            max_length: the token budget, defaults to `tavp_max_length`; the text is truncated to fit.
            return_tensors: `"pt"`, `"np"` or `None` (numpy arrays).

        Returns:
            A `BatchFeature` with `input_ids`, `attention_mask`, `token_type_ids`, `position_ids`
            `(B, seq_len)` int64, `visual_features` `(B, num_rows, feature_dim)` and `visual_boxes`
            `(B, num_rows, 4)` float32, `num_rows` the most regions of a row.
        """
        batch_size = len(word_ids)
        if batch_size == 0:
            raise ValueError("word_ids is empty; expected one list of word-piece ids per row.")
        if len(region_features) != batch_size or len(region_boxes) != batch_size:
            raise ValueError(
                f"Got {batch_size} word_ids rows, {len(region_features)} region_features and "
                f"{len(region_boxes)} region_boxes; expected one of each per row."
            )
        max_length = max_length or self.tavp_max_length
        feature_dim = self.feature_extractor.feature_dim
        regions = np.array([len(features) for features in region_features], dtype=np.int64)
        for index, (features, boxes) in enumerate(zip(region_features, region_boxes, strict=True)):
            if np.shape(features) != (regions[index], feature_dim) or np.shape(boxes) != (regions[index], 4):
                raise ValueError(
                    f"Row {index}: region_features must have shape (num_regions, {feature_dim}) and region_boxes "
                    f"(num_regions, 4); got {np.shape(features)} and {np.shape(boxes)}."
                )
        budget = max_length - regions - 2
        if bool((budget < 0).any()):
            index = int(np.flatnonzero(budget < 0)[0])
            raise ValueError(
                f"Sequence {index} has {regions[index]} regions, which with its special tokens exceed max_length="
                f"{max_length}; lower the feature extractor's max_regions or raise max_length."
            )
        lengths = np.minimum(np.array([len(words) for words in word_ids], dtype=np.int64), budget)
        text_length = lengths + 2  # [CLS] words [SEP]
        total = text_length + regions
        width = int(total.max())
        words = np.full((batch_size, width), self.tokenizer.pad_token_id, dtype=np.int64)
        word_block = _pad_lists(
            [list(ids[:length]) for ids, length in zip(word_ids, lengths, strict=True)], 0
        )
        words[:, 1 : 1 + word_block.shape[1]] = word_block

        column = np.arange(width)[None, :]
        lengths, text_length, total = lengths[:, None], text_length[:, None], total[:, None]
        is_region = (column >= text_length) & (column < total)
        input_ids = np.where(column <= lengths, words, self.tokenizer.pad_token_id)
        input_ids[:, 0] = self.tokenizer.cls_token_id
        input_ids = np.where(column == lengths + 1, self.tokenizer.sep_token_id, input_ids)
        input_ids = np.where(is_region, self.image_token_id, input_ids)
        # Appended regions are an unordered set placed by their boxes: one shared position.
        position_ids = np.where(column < text_length, column, np.where(is_region, text_length, 0))

        num_rows = int(regions.max())
        features = np.zeros((batch_size, num_rows, feature_dim), dtype=np.float32)
        boxes = np.zeros((batch_size, num_rows, 4), dtype=np.float32)
        for index, count in enumerate(regions.tolist()):
            features[index, :count] = region_features[index]
            boxes[index, :count] = region_boxes[index]
        data = {
            "input_ids": input_ids.astype(np.int64),
            "attention_mask": (column < total).astype(np.int64),
            "token_type_ids": is_region.astype(np.int64),
            "position_ids": position_ids.astype(np.int64),
            "visual_features": features,
            "visual_boxes": boxes,
        }
        return BatchFeature(data, tensor_type=return_tensors)

    def _cutmix(self, texts: list[str], max_length: int, seed, return_tensors) -> BatchFeature:
        if self.cutmix is None:
            raise ValueError(
                "cutmix=True needs a patch gallery: pass gallery= or call processor.set_gallery()."
            )
        mixed = self.cutmix(texts, self.tokenizer, self.image_token_id, generator=seed, max_length=max_length)
        padded = mixed.padded(self.tokenizer.pad_token_id)
        attention_mask = padded["attention_mask"]
        # Inline slots keep the position of the sub-word they replaced: positions are 0..len-1 as for text.
        position_ids = np.where(attention_mask == 1, np.arange(attention_mask.shape[1]), 0)
        slots_per_row = np.diff(mixed.slot_offsets)
        num_rows = int(slots_per_row.max(initial=0))
        row_mask = np.arange(num_rows) < slots_per_row[:, None]
        features = np.zeros((len(texts), num_rows, self.gallery.feature_dim), dtype=np.float32)
        boxes = np.zeros((len(texts), num_rows, 4), dtype=np.float32)
        if len(mixed.slot_patch_ids):
            features[row_mask] = np.asarray(self.gallery.get_features(mixed.slot_patch_ids), dtype=np.float32)
            boxes[row_mask] = np.asarray(self.gallery.get_boxes(mixed.slot_patch_ids), dtype=np.float32)
        data = {
            "input_ids": padded["mixed_input_ids"],
            "attention_mask": attention_mask,
            "token_type_ids": np.zeros_like(attention_mask),
            "position_ids": position_ids,
            "visual_features": features,
            "visual_boxes": boxes,
            "text_input_ids": padded["input_ids"],
        }
        return BatchFeature(data, tensor_type=return_tensors)

    def _pad(self, rows: list["_Row"], visual, return_tensors) -> BatchFeature:
        pad_id = self.tokenizer.pad_token_id
        data = {
            "input_ids": _pad_lists([row.ids for row in rows], pad_id),
            "attention_mask": _pad_lists([[1] * len(row.ids) for row in rows], 0),
            "token_type_ids": _pad_lists([row.segments for row in rows], 0),
            "position_ids": _pad_lists([row.positions for row in rows], 0),
        }
        if visual is not None:
            data["visual_features"], data["visual_boxes"] = visual
        return BatchFeature(data, tensor_type=return_tensors)

    # ---------------------------------------------------------------------------------------------------
    # Serialization
    # ---------------------------------------------------------------------------------------------------

    def to_dict(self):
        # The gallery may be millions of memory-mapped patches: never deep-copied into the config.
        gallery, cutmix = self.__dict__.pop("gallery", None), self.__dict__.pop("cutmix", None)
        try:
            output = super().to_dict()
        finally:
            self.gallery, self.cutmix = gallery, cutmix
        output.pop("gallery", None)
        output.pop("image_token_id", None)
        return output

    def save_pretrained(self, save_directory, save_gallery: bool = True, **kwargs):
        """Saves the tokenizer, feature extractor and `processor_config.json`; with `save_gallery`, the
        gallery too, in the `gallery/` subfolder, from which `from_pretrained` reloads it."""
        if save_gallery and self.gallery is not None:
            self.gallery.save_pretrained(Path(save_directory) / GALLERY_FOLDER)
        return super().save_pretrained(save_directory, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, gallery: PatchGallery | None = None, **kwargs):
        """Loads the processor; the gallery is `gallery` if given, else the saved `gallery/` subfolder if any, of
        the local folder or of the Hub repository (at the same `revision`)."""
        processor = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if gallery is None:
            gallery = _load_saved_gallery(pretrained_model_name_or_path, kwargs)
        if gallery is not None:
            processor.set_gallery(gallery)
        return processor


def _load_saved_gallery(source, kwargs) -> PatchGallery | None:
    """The gallery `save_pretrained` wrote next to the processor (`gallery/`), from a folder or a Hub repository;
    `None` if there is none. A gallery that exists but is broken raises."""
    subfolder = kwargs.get("subfolder") or ""
    local = Path(os.fspath(source)) / subfolder / GALLERY_FOLDER
    if local.is_dir():
        return PatchGallery.from_pretrained(local)
    if os.path.isdir(os.fspath(source)):
        return None
    folder = f"{subfolder.strip('/')}/{GALLERY_FOLDER}" if subfolder else GALLERY_FOLDER
    hub_kwargs = {
        key: kwargs[key]
        for key in ("cache_dir", "revision", "token", "local_files_only")
        if kwargs.get(key) is not None
    }
    config_file = cached_file(
        source,
        GALLERY_CONFIG_NAME,
        subfolder=folder,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        **hub_kwargs,
    )
    if config_file is None:
        return None
    return PatchGallery.from_pretrained(source, subfolder=folder, **hub_kwargs)


class _Row:
    """One unpadded sequence: token ids, segment ids and position ids."""

    __slots__ = ("ids", "segments", "positions")

    def __init__(self, ids: list[int], segments: list[int], positions: list[int]):
        self.ids, self.segments, self.positions = ids, segments, positions


def _pad_lists(rows: list[list[int]], value: int) -> np.ndarray:
    width = max((len(row) for row in rows), default=0)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for index, row in enumerate(rows):
        out[index, : len(row)] = row
    return out


def _truncate_pair(first: list[int] | None, second: list[int] | None, budget: int):
    """Truncates two token lists to `budget` tokens in all, always shortening the longer one first."""
    first, second = (
        (list(first) if first is not None else None),
        (list(second) if second is not None else None),
    )
    while (len(first or []) + len(second or [])) > budget:
        if second is None or (first is not None and len(first) >= len(second)):
            first.pop()
        else:
            second.pop()
    return first, second


# Saving copies this file and its siblings beside processor_config.json for `trust_remote_code` loading.
VLMixerProcessor.register_for_auto_class("AutoProcessor")
VLMixerRegionFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")


__all__ = ["VLMixerProcessor"]
