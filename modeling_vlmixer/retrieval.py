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
"""Image-text retrieval evaluation with [`VLMixerForImageTextRetrieval`]: full cross-encoder ranking, or two
stages (embedding shortlist, then cross-encoder re-ranking).

    >>> from modeling_vlmixer.retrieval import evaluate_retrieval, rank_image_text
    >>> result = rank_image_text(model, processor, captions, records, text_to_image, k=32)
    >>> result.recall()                        # {'i2t_r1': ..., 't2i_r1': ..., 'rsum': ...}
    >>> evaluate_retrieval(model, processor, captions, records, text_to_image)   # full ranking

Two ways to fill the `(num_images, num_texts)` score matrix the `retrieval_recall` metric ranks:

- **Full ranking** (`k=None`): the matching head scores every (image, text) pair, a joint row
  `[CLS] caption [SEP] [IMG] * num_regions` each (as `VLMixerProcessor(text=..., regions=...)` builds it).
  Exact, but `num_images * num_texts` forward passes (25M for COCO 5K).
- **Two stages** (`k` given): the text-only view of every caption and the image-only view (tags + regions) of
  every image are embedded once (`get_text_features` / `get_image_features`, cosine similarity of
  L2-normalized embeddings); every text shortlists its `k` most similar images and every image its `k` most
  similar texts (ties to the lower index, as the metric breaks them); the matching head re-ranks only the
  union of the shortlisted pairs (a pair shortlisted in both directions is scored once): at most
  `k * (num_images + num_texts)` forward passes.

**Scores of the two-stage matrix.** A re-ranked pair gets its matching score. Every other pair gets
`lowest - 3 + similarity`, with `lowest` the smallest matching score of the run: since similarities lie in
[-1, 1], that is below every re-ranked score, and those pairs are ordered among themselves by embedding
similarity. So each text's column ranks first its re-ranked images (its own top-`k` plus the images that
shortlisted it) by matching score, then the others by similarity, and Recall@K for K beyond the shortlist
is the first stage's recall there rather than a meaningless tie.

**Cost.** The joint forward passes dominate, so the joint rows are assembled cheaply: each caption is
tokenized once into word pieces and each image's regions are selected and normalized once by the feature
extractor; every batch of pairs is then built from those pieces with `VLMixerProcessor.joint_inputs` (array
operations, no tokenizer call). A batch only holds pairs of one joint length (the full grid is walked in
blocks of images with one region count x texts with one word-piece count, never listing all pairs), so
rows carry no padding and attention needs no mask. Everything runs under `torch.no_grad` on the model's
device, with the model in eval mode (its mode is restored after).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from processing.feature_extraction_vlmixer import RegionFeatures
from processing.metrics import retrieval_recall
from processing.metrics.retrieval_recall.retrieval_recall import DEFAULT_KS

from .modeling_vlmixer import VLMixerForImageTextRetrieval


__all__ = [
    "RetrievalScores",
    "encode_images",
    "encode_texts",
    "evaluate_retrieval",
    "rank_image_text",
    "shortlist_pairs",
]

#: Offset below the lowest matching score at which pairs outside the shortlist start (similarity in [-1, 1]).
UNSCORED_OFFSET = 3.0


@dataclass
class RetrievalScores:
    """The result of [`rank_image_text`].

    Attributes:
        scores (`np.ndarray` of shape `(num_images, num_texts)`, float64): the matrix to rank, higher = better
            match; what `retrieval_recall` takes.
        scored (`np.ndarray` of shape `(num_images, num_texts)`, bool): the pairs the matching head scored
            (all of them for a full ranking).
        num_scored_pairs (`int`): `scored.sum()`, the number of joint forward passes.
        similarity (`np.ndarray` of shape `(num_images, num_texts)`, float32, *optional*): cosine similarity of
            the image and text embeddings (two stages only).
        k (`int`, *optional*): shortlist size, `None` for a full ranking.
        text_to_image (`np.ndarray` of shape `(num_texts,)`, *optional*): the ground-truth image of each text.
    """

    scores: np.ndarray
    scored: np.ndarray
    num_scored_pairs: int
    similarity: np.ndarray | None = None
    k: int | None = None
    text_to_image: np.ndarray | None = None

    @property
    def scored_fraction(self) -> float:
        """The share of all (image, text) pairs that the matching head scored, in [0, 1]."""
        return self.num_scored_pairs / self.scores.size

    def recall(
        self, text_to_image: Sequence[int] | None = None, ks: Sequence[int] = DEFAULT_KS
    ) -> dict[str, float]:
        """Recall@K in both directions (the `retrieval_recall` metric's dict, percent)."""
        text_to_image = self.text_to_image if text_to_image is None else text_to_image
        if text_to_image is None:
            raise ValueError("text_to_image is needed for the recall: pass it here or to rank_image_text.")
        return retrieval_recall(self.scores, text_to_image, ks=ks)


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


def _batches(count: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def _to_device(batch, device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def encode_texts(
    model: VLMixerForImageTextRetrieval,
    processor,
    texts: Sequence[str],
    batch_size: int = 256,
    show_progress: bool = True,
) -> torch.Tensor:
    """Embeds the text-only view (`processor(text=...)`) of every text.

    Returns:
        `(num_texts, contrastive_dim)` float32 L2-normalized embeddings, on the CPU.
    """
    return _encode(
        texts,
        batch_size,
        show_progress,
        "Encoding texts",
        lambda part: model.get_text_features(
            **_to_device(processor(text=part, return_tensors="pt"), model.device)
        ),
    )


def encode_images(
    model: VLMixerForImageTextRetrieval,
    processor,
    images: Sequence[RegionFeatures],
    batch_size: int = 256,
    show_progress: bool = True,
) -> torch.Tensor:
    """Embeds the image-only view (`processor(regions=...)`: tags from the region labels + regions) of every
    image.

    Returns:
        `(num_images, contrastive_dim)` float32 L2-normalized embeddings, on the CPU.
    """
    return _encode(
        images,
        batch_size,
        show_progress,
        "Encoding images",
        lambda part: model.get_image_features(
            **_to_device(processor(regions=part, return_tensors="pt"), model.device)
        ),
    )


def _encode(
    items: Sequence, batch_size: int, show_progress: bool, desc: str, embed: Callable[[list], torch.Tensor]
) -> torch.Tensor:
    """`embed` applied to consecutive batches of `items` without gradients, concatenated as float32 on the CPU."""
    batch_size = _check_positive("batch_size", batch_size)
    embeddings = []
    with torch.no_grad():
        for part in tqdm(
            list(_batches(len(items), batch_size)), desc=desc, unit="batch", disable=not show_progress
        ):
            embeddings.append(embed(list(items[part])).float().cpu())
    return torch.cat(embeddings)


def shortlist_pairs(similarity: np.ndarray, k: int, chunk_size: int = 1024) -> np.ndarray:
    """The pairs of the two-stage shortlist.

    Args:
        similarity: `(num_images, num_texts)` embedding similarities.
        k: every text keeps its `k` most similar images and every image its `k` most similar texts (all of them
            when there are fewer); ties go to the lower index.
        chunk_size: rows / columns sorted at once (bounds the memory of the sort).

    Returns:
        `(num_images, num_texts)` bool mask of the union of both directions' shortlists.
    """
    k = _check_positive("k", k)
    similarity = np.asarray(similarity)
    num_images, num_texts = similarity.shape
    mask = np.zeros((num_images, num_texts), dtype=bool)
    for part in _batches(num_texts, chunk_size):  # text -> image: top-k of each column
        top = np.argsort(-similarity[:, part], axis=0, kind="stable")[:k]
        mask[top, np.arange(part.start, part.stop)[None, :]] = True
    for part in _batches(num_images, chunk_size):  # image -> text: top-k of each row
        top = np.argsort(-similarity[part], axis=1, kind="stable")[:, :k]
        mask[np.arange(part.start, part.stop)[:, None], top] = True
    return mask


class _JointPairs:
    """Every caption's word pieces and every image's selected regions, computed once; joint rows of any pairs
    are built from them (`VLMixerProcessor.joint_inputs`) and scored by the matching head."""

    def __init__(self, model, processor, texts, images, batch_size: int, show_progress: bool):
        self.model, self.processor = model, processor
        self.batch_size, self.show_progress = batch_size, show_progress
        self.word_ids = processor.word_pieces(list(texts))
        self.features: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        for part in _batches(len(images), batch_size):
            visual = processor.feature_extractor(list(images[part]), return_tensors="np")
            for row, count in enumerate(visual["visual_mask"].sum(axis=1).tolist()):
                self.features.append(visual["visual_features"][row, :count].copy())
                self.boxes.append(visual["visual_boxes"][row, :count].copy())
        self.max_length = processor.tavp_max_length
        self.num_regions = np.array([len(features) for features in self.features], dtype=np.int64)
        self.num_words = np.array([len(ids) for ids in self.word_ids], dtype=np.int64)

    def joint_length(self, num_regions: np.ndarray, num_words: np.ndarray) -> np.ndarray:
        """Length of the joint rows of images with `num_regions` and texts with `num_words` word pieces (the
        text truncated to the budget the regions leave, as `joint_inputs` does)."""
        words = np.minimum(num_words, np.maximum(self.max_length - num_regions - 2, 0))
        return words + 2 + num_regions

    def inputs(self, image_index: np.ndarray, text_index: np.ndarray):
        return self.processor.joint_inputs(
            [self.word_ids[t] for t in text_index.tolist()],
            [self.features[i] for i in image_index.tolist()],
            [self.boxes[i] for i in image_index.tolist()],
            max_length=self.max_length,
            return_tensors="pt",
        )

    def batches(
        self, segments: Iterable[tuple[int, np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Cuts `(joint_length, image_index, text_index)` segments, in order of joint length, into batches of at
        most `batch_size` pairs that never mix two lengths: no padding, so no attention mask to apply."""
        images: list[np.ndarray] = []
        texts: list[np.ndarray] = []
        pending, current = 0, None
        for length, image_index, text_index in segments:
            if length != current and pending:
                yield np.concatenate(images), np.concatenate(texts)
                images, texts, pending = [], [], 0
            current = length
            start = 0
            while start < len(image_index):
                take = min(self.batch_size - pending, len(image_index) - start)
                images.append(image_index[start : start + take])
                texts.append(text_index[start : start + take])
                pending, start = pending + take, start + take
                if pending == self.batch_size:
                    yield np.concatenate(images), np.concatenate(texts)
                    images, texts, pending = [], [], 0
        if pending:
            yield np.concatenate(images), np.concatenate(texts)

    def score(self, batches: Iterable[tuple[np.ndarray, np.ndarray]], total: int, out: np.ndarray) -> None:
        """Writes the matching score of every pair of `batches` into `out[image_index, text_index]`."""
        device = self.model.device
        with (
            torch.no_grad(),
            tqdm(
                total=total,
                desc="Scoring pairs",
                unit="pair",
                unit_scale=True,
                disable=not self.show_progress,
            ) as progress,
        ):
            for image_index, text_index in batches:
                inputs = _to_device(self.inputs(image_index, text_index), device)
                out[image_index, text_index] = self.model(**inputs).logits.float().cpu().numpy()
                progress.update(len(image_index))

    def full_grid(self, piece: int = 1 << 20) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Every (image, text) pair as segments in order of joint length, without listing all pairs at once:
        images grouped by region count and texts by word-piece count give blocks of one joint length each."""
        image_groups = [np.flatnonzero(self.num_regions == r) for r in np.unique(self.num_regions)]
        text_groups = [np.flatnonzero(self.num_words == w) for w in np.unique(self.num_words)]
        blocks = [
            (int(self.joint_length(self.num_regions[images[0]], self.num_words[texts[0]])), images, texts)
            for images in image_groups
            for texts in text_groups
        ]
        blocks.sort(key=lambda block: block[0])
        for length, images, texts in blocks:
            for part in _batches(len(images) * len(texts), piece):
                flat = np.arange(part.start, part.stop)
                yield length, images[flat // len(texts)], texts[flat % len(texts)]


def rank_image_text(
    model: VLMixerForImageTextRetrieval,
    processor,
    texts: Sequence[str],
    images: Sequence[RegionFeatures],
    text_to_image: Sequence[int] | None = None,
    k: int | None = None,
    batch_size: int = 2048,
    embedding_batch_size: int = 256,
    show_progress: bool = True,
) -> RetrievalScores:
    """Scores every (image, text) pair for retrieval, by full cross-encoder ranking or in two stages.

    Args:
        model: a [`VLMixerForImageTextRetrieval`] (its mode is restored afterwards; it runs in eval mode).
        processor: the `VLMixerProcessor` matching `model` (placeholder id and feature width are checked).
        texts: the `num_texts` captions.
        images: the `num_images` images' detector output (e.g. `[store[image_id] for image_id in ids]`).
        text_to_image: the ground-truth image index of each text; only checked and kept for
            `RetrievalScores.recall()`.
        k: `None` for a full ranking; else the shortlist size of the two-stage ranking (see the module docs).
        batch_size: (image, text) pairs per joint forward pass.
        embedding_batch_size: texts or images per embedding forward pass (two stages only).
        show_progress: show tqdm progress bars.

    Returns:
        [`RetrievalScores`] with the `(num_images, num_texts)` score matrix and the number of scored pairs.

    Raises:
        ValueError: if `k` or a batch size is not a positive int, `texts` or `images` is empty, `text_to_image`
            does not hold one image index in `[0, num_images)` per text, or processor and model disagree.
    """
    if k is not None:
        k = _check_positive("k", k)
    batch_size = _check_positive("batch_size", batch_size)
    embedding_batch_size = _check_positive("embedding_batch_size", embedding_batch_size)
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of captions, got a single string.")
    texts, images = list(texts), list(images)
    if not texts:
        raise ValueError("texts is empty; expected at least one caption.")
    if not images:
        raise ValueError("images is empty; expected at least one RegionFeatures record.")
    num_images, num_texts = len(images), len(texts)
    if text_to_image is not None:
        text_to_image = np.asarray(text_to_image)
        if text_to_image.shape != (num_texts,):
            raise ValueError(
                f"text_to_image must hold one image index per text ({num_texts}), got shape "
                f"{text_to_image.shape}."
            )
        if (
            not np.issubdtype(text_to_image.dtype, np.integer)
            or text_to_image.min() < 0
            or text_to_image.max() >= num_images
        ):
            raise ValueError(f"text_to_image must hold integer image indices in [0, {num_images}).")
        text_to_image = text_to_image.astype(np.int64)
    processor.check_model_config(model.config)

    was_training = model.training
    model.eval()
    try:
        pairs = _JointPairs(model, processor, texts, images, batch_size, show_progress)
        scores = np.empty((num_images, num_texts), dtype=np.float64)
        if k is None:
            pairs.score(pairs.batches(pairs.full_grid()), num_images * num_texts, scores)
            return RetrievalScores(
                scores=scores,
                scored=np.ones((num_images, num_texts), dtype=bool),
                num_scored_pairs=num_images * num_texts,
                text_to_image=text_to_image,
            )
        text_embeds = encode_texts(model, processor, texts, embedding_batch_size, show_progress)
        image_embeds = encode_images(model, processor, images, embedding_batch_size, show_progress)
        similarity = (image_embeds @ text_embeds.T).numpy()
        scored = shortlist_pairs(similarity, k)
        image_index, text_index = np.nonzero(scored)
        lengths = pairs.joint_length(pairs.num_regions[image_index], pairs.num_words[text_index])
        order = np.argsort(lengths, kind="stable")
        image_index, text_index, lengths = image_index[order], text_index[order], lengths[order]
        cuts = np.flatnonzero(np.diff(lengths)) + 1
        segments = (
            (int(length[0]), image_part, text_part)
            for length, image_part, text_part in zip(
                np.split(lengths, cuts), np.split(image_index, cuts), np.split(text_index, cuts), strict=True
            )
        )
        pairs.score(pairs.batches(segments), len(image_index), scores)
        # Pairs outside the shortlist: below every matching score, in order of similarity (in [-1, 1]).
        lowest = float(scores[scored].min())
        unscored = ~scored
        scores[unscored] = similarity[unscored].astype(np.float64) + (lowest - UNSCORED_OFFSET)
        return RetrievalScores(
            scores=scores,
            scored=scored,
            num_scored_pairs=len(image_index),
            similarity=similarity,
            k=k,
            text_to_image=text_to_image,
        )
    finally:
        model.train(was_training)


def evaluate_retrieval(
    model: VLMixerForImageTextRetrieval,
    processor,
    texts: Sequence[str],
    images: Sequence[RegionFeatures],
    text_to_image: Sequence[int],
    k: int | None = None,
    batch_size: int = 2048,
    embedding_batch_size: int = 256,
    ks: Sequence[int] = DEFAULT_KS,
    show_progress: bool = True,
) -> dict[str, float]:
    """Recall@K in both directions of [`rank_image_text`]'s scores: the `retrieval_recall` metric's dict
    (`i2t_r{K}`, `t2i_r{K}`, means and `rsum`, percent). Arguments as for [`rank_image_text`]; `ks` the
    cut-offs."""
    if text_to_image is None:
        raise ValueError("text_to_image is required: the ground-truth image index of each text.")
    result = rank_image_text(
        model,
        processor,
        texts,
        images,
        text_to_image=text_to_image,
        k=k,
        batch_size=batch_size,
        embedding_batch_size=embedding_batch_size,
        show_progress=show_progress,
    )
    return result.recall(ks=ks)
