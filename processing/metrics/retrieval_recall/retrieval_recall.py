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
"""Image-text retrieval Recall@K in both directions (COCO / Flickr30K protocol).

This file is an `evaluate` metric module and is SELF-CONTAINED (`evaluate.load(folder)` copies only this
file): it imports nothing but `evaluate`, `datasets`, `numpy` and the standard library.

Inputs: `scores`, a similarity matrix of shape (num_images, num_texts) (higher = more similar), and
`text_to_image`, the index of the ground-truth image of each text (5 captions per image in COCO/Flickr30K;
any number is allowed).

- Image -> text ("text retrieval", TR, keys `i2t_r{K}`): each image ranks all texts by its row of `scores`;
  its rank is the BEST rank among its own captions; it is a hit at K if that rank is < K, i.e. if ANY of
  its captions is in its top K. Averaged over the images that have at least one text (an image without a
  caption is only a distractor for text -> image retrieval).
- Text -> image ("image retrieval", IR, keys `t2i_r{K}`): each text ranks all images by its column of
  `scores`; a hit at K if its image is in its top K. Averaged over all texts.
- Ties are broken deterministically: among equal scores the LOWER index ranks first, i.e. the rank of item
  j is `#{scores > s_j} + #{i < j: scores == s_j}` -- the position of j after a stable sort on `-score`.
  This is "optimistic for low indices": a constant score matrix puts image 0's first caption at rank 0.
- Recalls are reported in PERCENT (as in VSE++/UNITER/Oscar and the VLMixer paper); `i2t_r_mean`,
  `t2i_r_mean` and `r_mean` are their means, and `rsum` is the sum of all the recalls (for K = 1, 5, 10 the
  usual RSUM, at most 600). NaN scores are rejected.
- COCO 1K results are conventionally the average over the five 1K folds of the 5K test set: compute each
  fold separately and average.

For very large matrices (e.g. COCO 5K: 5,000 x 25,000) call the plain function `retrieval_recall` directly
(also exported by `processing.metrics`): going through `evaluate` serialises the matrix to Arrow first.
"""

import datasets
import evaluate
import numpy as np


_CITATION = """\
@inproceedings{faghri2018vse,
  title={{VSE++}: Improving Visual-Semantic Embeddings with Hard Negatives},
  author={Faghri, Fartash and Fleet, David J. and Kiros, Jamie Ryan and Fidler, Sanja},
  booktitle={BMVC},
  year={2018}
}
"""

_DESCRIPTION = """\
Image-text retrieval Recall@K (percent) in both directions from a (num_images, num_texts) similarity matrix:
image->text counts an image as a hit if any of its captions is in its top K; text->image counts a caption
as a hit if its image is in its top K. Ties: the lower index ranks first.
"""

_KWARGS_DESCRIPTION = """
Args:
    scores (`list[list[float]]` or array of shape (num_images, num_texts)): similarities, one row per image.
        Rows may be streamed with `add_batch(scores=...)` in image order.
    text_to_image (`list[int]`): the ground-truth image index of each text (length num_texts). Passed to
        `compute`, not to `add_batch`.
    ks (`list[int]`, *optional*, defaults to `(1, 5, 10)`): the cut-offs K.
Returns:
    i2t_r{K} (`float`): image -> text (text retrieval) Recall@K, percent.
    t2i_r{K} (`float`): text -> image (image retrieval) Recall@K, percent.
    i2t_r_mean, t2i_r_mean, r_mean (`float`): means of the above, percent.
    rsum (`float`): sum of all the i2t and t2i recalls.
Examples:
    >>> recall = evaluate.load("processing/metrics/retrieval_recall")
    >>> recall.compute(scores=[[0.9, 0.1], [0.2, 0.8]], text_to_image=[0, 1], ks=[1])
    {'i2t_r1': 100.0, 't2i_r1': 100.0, 'i2t_r_mean': 100.0, 't2i_r_mean': 100.0, 'r_mean': 100.0, 'rsum': 200.0}
"""

DEFAULT_KS = (1, 5, 10)

# Roughly this many matrix entries are compared at once.
_CHUNK_ELEMENTS = 1 << 22


def _check_inputs(scores, text_to_image):
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (num_images, num_texts) matrix, got shape {scores.shape}")
    num_images, num_texts = scores.shape
    if num_images == 0 or num_texts == 0:
        raise ValueError(f"scores must be non-empty, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    text_to_image = np.asarray(text_to_image)
    if text_to_image.ndim != 1 or len(text_to_image) != num_texts:
        raise ValueError(
            f"text_to_image must hold one image index per text ({num_texts}), got {text_to_image.shape}"
        )
    if not np.issubdtype(text_to_image.dtype, np.integer):
        as_int = text_to_image.astype(np.int64)
        if not np.array_equal(as_int, text_to_image):
            raise ValueError("text_to_image must hold integer image indices")
        text_to_image = as_int
    text_to_image = text_to_image.astype(np.int64)
    if text_to_image.min() < 0 or text_to_image.max() >= num_images:
        raise ValueError(f"text_to_image indices must lie in [0, {num_images})")
    return scores, text_to_image


def _text_ranks_in_image_rows(scores, text_to_image):
    """Rank (0-based) of each text t in the row of its own image, ties to the lower text index."""
    num_images, num_texts = scores.shape
    ranks = np.empty(num_texts, dtype=np.int64)
    text_index = np.arange(num_texts)
    step = max(1, _CHUNK_ELEMENTS // num_texts)
    for start in range(0, num_texts, step):
        texts = text_index[start : start + step]
        rows = scores[text_to_image[texts]]  # (chunk, num_texts)
        target = rows[np.arange(len(texts)), texts][:, None]
        higher = (rows > target).sum(axis=1)
        tied_before = ((rows == target) & (text_index[None, :] < texts[:, None])).sum(axis=1)
        ranks[texts] = higher + tied_before
    return ranks


def _image_ranks_in_text_columns(scores, text_to_image):
    """Rank (0-based) of each text's image in the text's column, ties to the lower image index."""
    num_images, num_texts = scores.shape
    ranks = np.empty(num_texts, dtype=np.int64)
    image_index = np.arange(num_images)
    step = max(1, _CHUNK_ELEMENTS // num_images)
    for start in range(0, num_texts, step):
        texts = np.arange(start, min(start + step, num_texts))
        columns = scores[:, texts]  # (num_images, chunk)
        images = text_to_image[texts]
        target = columns[images, np.arange(len(texts))][None, :]
        higher = (columns > target).sum(axis=0)
        tied_before = ((columns == target) & (image_index[:, None] < images[None, :])).sum(axis=0)
        ranks[texts] = higher + tied_before
    return ranks


def retrieval_ranks(scores, text_to_image):
    """The ranks behind the recalls.

    Returns `(i2t_ranks, t2i_ranks)`: `i2t_ranks[i]` is the best (0-based) rank among image i's captions in
    its row (-1 for an image without any text), `t2i_ranks[t]` the (0-based) rank of text t's image in its
    column. Ties: the lower index ranks first.
    """
    scores, text_to_image = _check_inputs(scores, text_to_image)
    num_images = scores.shape[0]
    text_ranks = _text_ranks_in_image_rows(scores, text_to_image)
    i2t = np.full(num_images, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(i2t, text_to_image, text_ranks)
    i2t[i2t == np.iinfo(np.int64).max] = -1
    return i2t, _image_ranks_in_text_columns(scores, text_to_image)


def retrieval_recall(scores, text_to_image, ks=DEFAULT_KS) -> dict:
    """Recall@K (percent) in both directions; see the module docstring for the definition and the keys."""
    ks = [int(k) for k in ks]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    i2t_ranks, t2i_ranks = retrieval_ranks(scores, text_to_image)
    i2t_ranks = i2t_ranks[i2t_ranks >= 0]  # images without a caption are not i2t queries
    result = {}
    for k in ks:
        result[f"i2t_r{k}"] = 100.0 * float(np.mean(i2t_ranks < k))
    for k in ks:
        result[f"t2i_r{k}"] = 100.0 * float(np.mean(t2i_ranks < k))
    i2t = [result[f"i2t_r{k}"] for k in ks]
    t2i = [result[f"t2i_r{k}"] for k in ks]
    result["i2t_r_mean"] = sum(i2t) / len(i2t)
    result["t2i_r_mean"] = sum(t2i) / len(t2i)
    result["r_mean"] = (sum(i2t) + sum(t2i)) / (len(i2t) + len(t2i))
    result["rsum"] = sum(i2t) + sum(t2i)
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRecall(evaluate.Metric):
    """Image-text retrieval Recall@K in both directions."""

    def _info(self):
        info = evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # One row of the similarity matrix per image. float64 so that float64 scores keep their ties.
            features=datasets.Features({"scores": datasets.Sequence(datasets.Value("float64"))}),
            reference_urls=["https://arxiv.org/abs/1707.05612"],
        )
        # Read the stored rows back as one numpy matrix instead of Python lists (about 10x faster on large
        # matrices). Set after construction: MetricInfo's own check only knows scalar `Value` features.
        info.format = "numpy"
        return info

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add rows of the similarity matrix (`scores=`, in image order); `text_to_image` goes to `compute`."""
        # A 2-D array is written much faster as a list of float64 row arrays than as one nested array.
        scores = kwargs.get("scores")
        if isinstance(scores, np.ndarray) and scores.ndim == 2:
            kwargs["scores"] = list(scores.astype(np.float64, copy=False))
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, scores, text_to_image=None, ks=DEFAULT_KS):
        if text_to_image is None:
            raise ValueError(
                "retrieval_recall needs `text_to_image` (the image index of each text) in compute()"
            )
        if isinstance(scores, np.ndarray) and scores.dtype == object:  # rows of unequal length
            lengths = {len(row) for row in scores}
            if len(lengths) != 1:
                raise ValueError(
                    f"all rows of scores must have num_texts entries, got lengths {sorted(lengths)}"
                )
            scores = np.stack([np.asarray(row, dtype=np.float64) for row in scores])
        return retrieval_recall(scores, text_to_image, ks=ks)
