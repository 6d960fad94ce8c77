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
"""Cross-modal CutMix (CMC): turning a sentence T into a multimodal sentence S.

CMC finds the visually grounded words of a sentence (words or multi-word spans whose normalized form is a
concept of the [`PatchGallery`]) and replaces each of them, with probability `r_cmc`, by an image patch of
that concept. Patch `i` of the concept is drawn with probability proportional to

    p_i = c_i^con + r_ctx / |G_i| * sum_{j in G_i} c_ij^ctx

where `c_i^con` is the detector confidence of the patch, `G_i` the set of the patch's contextual concepts
(the other concepts detected in its image) that are also grounded in the sentence, and `c_ij^ctx` the
confidence of contextual concept `j` in the patch's image (the term is 0 when `G_i` is empty). Only the
`num_shots` patches with the highest `p_i` are candidates ("15-shot CMC").

S is aligned position by position with T: every sub-word token of a replaced word becomes a visual slot
(token id `image_token_id`) that holds the patch, so `len(S) == len(T)` and the MLM target `CE(S_hat, T)` is
exact.

Interpretation choices (the method description leaves them open):

- *Words* are the words of the fast tokenizer's pre-tokenizer (`Encoding.word_ids`), so punctuation is a
  word of its own (`"traffic-light"` is three words and does not match `"traffic light"`). A word's text is
  the decoded text of its tokens, i.e. the tokenizer's own normalization of it (lower case and without
  accents for an uncased BERT), then normalized as below.
- *Concept normalization* ([`normalize_concept`]): lower case, `_` read as a space, punctuation split off
  as separate words (as BERT's pre-tokenizer does), whitespace collapsed, and the LAST word of a phrase
  singularized with [`singularize`] (English compounds inflect their head noun: "traffic lights" ->
  "traffic light", while "sports ball" keeps "sports").
- *Grounded spans* are matched longest first, left to right, non-overlapping.
- *The sentence's concepts* (the set that `G_i` is intersected with) are the distinct concepts of the
  grounded spans that are visible after truncation, whether or not they are replaced. The concept being
  replaced never counts: a patch's contextual concepts exclude its own concept by construction.
- *Ties* in `p_i` are broken by patch id, smaller id first, both for the `num_shots` cut-off and for the
  order of the candidates.
- If every candidate has `p_i = 0` (zero-confidence patches), the draw is uniform over the candidates.
- Each grounded span (each occurrence, also of a repeated concept) is decided and drawn independently; a
  replaced multi-word span is one patch in all of its sub-word slots.
- *Truncation* to `max_length` happens after the matching: the sentence is tokenized once without
  truncation, grounded spans are matched on its complete words, and the window is then cut exactly as the
  tokenizer truncates (special tokens kept, `tokenizer.truncation_side` honoured). A span cut in half keeps
  its visible sub-words as slots; spans that are entirely cut away are dropped (they are not counted as the
  sentence's concepts and draw no random numbers).
- *Randomness*: one `numpy.random.Generator` per call draws, in this order, one uniform number per visible
  grounded span of the batch (replace it if `u < r_cmc`) and one uniform number per replaced span (the
  inverse-CDF draw of its patch). The same seed and batch therefore give the same output, whatever the
  cache state.

The output of a call is a [`CutMixBatch`] of flat arrays (T and S token ids, the visual-slot mask, the patch of
every slot, the grounded spans); `batch[b]` gives one sentence as a [`CutMixResult`] of lists.

This module is shipped as Hub remote code: it imports only the standard library and numpy.
"""

from __future__ import annotations

import bisect
import itertools
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np


if TYPE_CHECKING:
    from .patch_gallery import PatchGallery

__all__ = [
    "IRREGULAR_SINGULARS",
    "CrossModalCutMix",
    "CutMixBatch",
    "CutMixResult",
    "GroundedSpan",
    "ReplacedSpan",
    "normalize_concept",
    "singularize",
]

# --------------------------------------------------------------------------------------------------------
# Concept normalization
# --------------------------------------------------------------------------------------------------------

#: Exceptions to the suffix rules of [`singularize`], lower case. Every value maps to itself under
#: `singularize` (a test checks it), so normalizing a normalized concept never changes it.
IRREGULAR_SINGULARS: dict[str, str] = {
    # Irregular plurals.
    "people": "person",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "feet": "foot",
    "teeth": "tooth",
    "oxen": "ox",
    "cacti": "cactus",
    # "-ves" plurals of "-f"/"-fe" nouns (other "-ves" words, e.g. "gloves", just drop the "s").
    "knives": "knife",
    "wives": "wife",
    "lives": "life",
    "leaves": "leaf",
    "loaves": "loaf",
    "halves": "half",
    "shelves": "shelf",
    "wolves": "wolf",
    "calves": "calf",
    "scarves": "scarf",
    "thieves": "thief",
    "hooves": "hoof",
    # "-es" plurals the suffix rules would cut wrongly.
    "buses": "bus",
    "lenses": "lens",
    "octopuses": "octopus",
    "walruses": "walrus",
    "cactuses": "cactus",
    "axes": "axe",
    "tomatoes": "tomato",
    "potatoes": "potato",
    "mangoes": "mango",
    "heroes": "hero",
    "volcanoes": "volcano",
    # "-ies" plurals of "-ie" nouns (the rule gives "-y").
    "cookies": "cookie",
    "movies": "movie",
    "brownies": "brownie",
    "hoodies": "hoodie",
    "zombies": "zombie",
    "goalies": "goalie",
    # Plurals ending in "-is"/"-us", which the rules keep as singulars.
    "skis": "ski",
    "taxis": "taxi",
    "kiwis": "kiwi",
    "bikinis": "bikini",
    "menus": "menu",
    # Singulars ending in "s" that the rules would cut.
    "lens": "lens",
    "species": "species",
    "series": "series",
    "news": "news",
    "scissors": "scissors",
}

# Singular endings in "s": "glass", "bus"/"cactus", "tennis"/"axis".
_SINGULAR_S_ENDINGS = ("ss", "us", "is")
# Plural endings that take "-es" after a sibilant: "glasses", "boxes", "benches", "dishes".
_SIBILANT_ES_ENDINGS = ("sses", "xes", "ches", "shes")


def singularize(word: str) -> str:
    """Folds a lower-case English plural noun to its singular, with simple suffix rules.

    The rules, in order:

    1. [`IRREGULAR_SINGULARS`] first ("people" -> "person", "knives" -> "knife", "skis" -> "ski", "lens").
    2. Words shorter than 4 letters, words not ending in "s" and words ending in "ss", "us" or "is" are
       kept ("bus", "glass", "cactus", "tennis").
    3. "-ies" -> "-y" ("ponies" -> "pony"), except 4-letter words, which drop the "s" ("ties" -> "tie").
    4. "-sses", "-xes", "-ches", "-shes" drop "es" ("glasses" -> "glass", "boxes" -> "box").
    5. Any other final "s" is dropped ("dogs" -> "dog", "horses" -> "horse", "shoes" -> "shoe").

    The function only has to map a plural and its singular to the same string (both sides of a match are
    folded); it does not have to produce correct English for every word.

    Args:
        word: One lower-case word.

    Returns:
        The folded word.
    """
    irregular = IRREGULAR_SINGULARS.get(word)
    if irregular is not None:
        return irregular
    if len(word) < 4 or not word.endswith("s") or word.endswith(_SINGULAR_S_ENDINGS):
        return word
    if word.endswith("ies"):
        return word[:-3] + "y" if len(word) > 4 else word[:-1]
    if word.endswith(_SIBILANT_ES_ENDINGS):
        return word[:-2]
    return word[:-1]


def _is_punctuation(char: str) -> bool:
    # The definition of BERT's pre-tokenizer: every non-alphanumeric printable ASCII character, plus the
    # Unicode punctuation categories.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def normalize_concept(text: str) -> str:
    """Normalizes a concept name or a phrase of a sentence to the form the gallery is indexed by.

    Lower case; `_` becomes a space (detector vocabularies such as "traffic_light"); every other punctuation
    character becomes a word of its own ("t-shirt" -> "t - shirt", as BERT's pre-tokenizer splits it);
    whitespace is collapsed; the last word is folded with [`singularize`] ("Traffic  Lights" ->
    "traffic light").

    Args:
        text: A concept label or a phrase.

    Returns:
        The normalized concept; an empty string if `text` has no word.
    """
    text = text.lower().replace("_", " ")
    if any(_is_punctuation(char) for char in text):
        text = "".join(f" {char} " if _is_punctuation(char) else char for char in text)
    words = text.split()
    if not words:
        return ""
    words[-1] = singularize(words[-1])
    return " ".join(words)


# --------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------


class GroundedSpan(NamedTuple):
    """A visually grounded span of a sentence: words `[start, end)` name gallery concept `concept_id`."""

    start: int
    end: int
    concept_id: int


class ReplacedSpan(NamedTuple):
    """A grounded span that CMC replaced by a patch.

    Attributes:
        word_start: First word of the span (index into the tokenizer's words of the sentence).
        word_end: One past the last word of the span.
        token_start: First visual slot of the span in the (truncated) token sequence.
        token_end: One past the last visual slot of the span.
        concept_id: Gallery concept of the span.
        patch_id: Gallery patch held by every slot of the span.
        text: The replaced words as they appear in the sentence.
    """

    word_start: int
    word_end: int
    token_start: int
    token_end: int
    concept_id: int
    patch_id: int
    text: str


@dataclass(slots=True)
class CutMixResult:
    """CMC output for one sentence (a view of a [`CutMixBatch`]). The sequences have the same length `L`.

    Attributes:
        input_ids (`list[int]` of length `L`): Token ids of the text T, special tokens included.
        mixed_input_ids (`list[int]` of length `L`): Token ids of the multimodal sentence S: those of T with
            `image_token_id` at every visual slot.
        visual_slot_mask (`list[bool]` of length `L`): `True` at the visual slots of S.
        slot_patch_ids (`list[int]` of length `sum(visual_slot_mask)`): Gallery patch of each visual slot,
            in sequence order (a patch is repeated in every sub-word slot of its span).
        replaced_spans (`list[ReplacedSpan]`): The replaced spans, in sentence order.
        grounded_spans (`list[GroundedSpan]`): All grounded spans visible in T (replaced or not).
    """

    input_ids: list[int]
    mixed_input_ids: list[int]
    visual_slot_mask: list[bool]
    slot_patch_ids: list[int]
    replaced_spans: list[ReplacedSpan]
    grounded_spans: list[GroundedSpan]


@dataclass(eq=False)
class CutMixBatch:
    """CMC output for a batch of `B` sentences, as flat arrays (a few allocations per batch, not per token).

    Sentence `b` owns tokens `[sequence_offsets[b], sequence_offsets[b + 1])` of the token arrays, visual slots
    `[slot_offsets[b], slot_offsets[b + 1])` of `slot_patch_ids` and grounded spans
    `[span_offsets[b], span_offsets[b + 1])` of the `span_*` arrays. `batch[b]` (and iteration) gives the
    [`CutMixResult`] of one sentence; [`CutMixBatch.padded`] gives padded `(B, L)` arrays.

    Attributes:
        input_ids (`np.ndarray` of shape `(N,)`, int64): Token ids of the texts T, concatenated (special
            tokens included, after truncation).
        mixed_input_ids (`np.ndarray` of shape `(N,)`, int64): Token ids of the multimodal sentences S:
            `input_ids` with `image_token_id` at every visual slot.
        visual_slot_mask (`np.ndarray` of shape `(N,)`, bool): `True` at the visual slots.
        sequence_offsets (`np.ndarray` of shape `(B + 1,)`, int64): Token range of each sentence.
        slot_patch_ids (`np.ndarray` of shape `(M,)`, int64): Gallery patch of each visual slot, in token
            order (`M = visual_slot_mask.sum()`): the rows of `visual_features` / `visual_boxes`.
        slot_offsets (`np.ndarray` of shape `(B + 1,)`, int64): Slot range of each sentence.
        span_offsets (`np.ndarray` of shape `(B + 1,)`, int64): Grounded-span range of each sentence.
        span_word_start (`np.ndarray` of shape `(G,)`, int64): First word of each grounded span visible
            after truncation (words of the tokenizer's pre-tokenizer).
        span_word_end (`np.ndarray` of shape `(G,)`, int64): One past its last word.
        span_token_start (`np.ndarray` of shape `(G,)`, int64): First token of the span in its sentence's
            (truncated) sequence.
        span_token_end (`np.ndarray` of shape `(G,)`, int64): One past its last (visible) token.
        span_concept_ids (`np.ndarray` of shape `(G,)`, int64): Concept of each span.
        span_patch_ids (`np.ndarray` of shape `(G,)`, int64): The patch that replaced the span; -1 if kept.
        span_char_start (`np.ndarray` of shape `(G,)`, int64): Character range of a replaced span in its
            text (whole words, even when truncation cut the span); -1 for kept spans.
        span_char_end (`np.ndarray` of shape `(G,)`, int64): End of that character range.
        texts (`list[str]`): The sentences.
    """

    input_ids: np.ndarray
    mixed_input_ids: np.ndarray
    visual_slot_mask: np.ndarray
    sequence_offsets: np.ndarray
    slot_patch_ids: np.ndarray
    slot_offsets: np.ndarray
    span_offsets: np.ndarray
    span_word_start: np.ndarray
    span_word_end: np.ndarray
    span_token_start: np.ndarray
    span_token_end: np.ndarray
    span_concept_ids: np.ndarray
    span_patch_ids: np.ndarray
    span_char_start: np.ndarray
    span_char_end: np.ndarray
    texts: list[str]

    def __len__(self) -> int:
        return len(self.sequence_offsets) - 1

    def __getitem__(self, index: int) -> CutMixResult:
        index = range(len(self))[index]
        token_start, token_end = self.sequence_offsets[index : index + 2].tolist()
        slot_start, slot_end = self.slot_offsets[index : index + 2].tolist()
        span_start, span_end = self.span_offsets[index : index + 2].tolist()
        grounded_spans, replaced_spans = [], []
        for span in range(span_start, span_end):
            grounded = GroundedSpan(
                int(self.span_word_start[span]),
                int(self.span_word_end[span]),
                int(self.span_concept_ids[span]),
            )
            grounded_spans.append(grounded)
            if self.span_patch_ids[span] >= 0:
                text = self.texts[index][self.span_char_start[span] : self.span_char_end[span]]
                replaced_spans.append(
                    ReplacedSpan(
                        grounded.start,
                        grounded.end,
                        int(self.span_token_start[span]),
                        int(self.span_token_end[span]),
                        grounded.concept_id,
                        int(self.span_patch_ids[span]),
                        text,
                    )
                )
        return CutMixResult(
            input_ids=self.input_ids[token_start:token_end].tolist(),
            mixed_input_ids=self.mixed_input_ids[token_start:token_end].tolist(),
            visual_slot_mask=self.visual_slot_mask[token_start:token_end].tolist(),
            slot_patch_ids=self.slot_patch_ids[slot_start:slot_end].tolist(),
            replaced_spans=replaced_spans,
            grounded_spans=grounded_spans,
        )

    def __iter__(self) -> Iterator[CutMixResult]:
        return (self[index] for index in range(len(self)))

    def padded(self, pad_token_id: int) -> dict[str, np.ndarray]:
        """Right-pads the sentences to the longest one.

        Args:
            pad_token_id: Id written at the padded positions of `input_ids` and `mixed_input_ids`.

        Returns:
            `input_ids`, `mixed_input_ids` (int64), `visual_slot_mask` (bool) and `attention_mask` (int64),
            each of shape `(B, L)`; the visual slots of each row, in order, are `slot_patch_ids` (flat).
        """
        lengths = np.diff(self.sequence_offsets)
        attention_mask = np.arange(lengths.max(initial=0)) < lengths[:, None]
        padded = {}
        for name, fill in (
            ("input_ids", pad_token_id),
            ("mixed_input_ids", pad_token_id),
            ("visual_slot_mask", False),
        ):
            values = getattr(self, name)
            padded[name] = np.full(attention_mask.shape, fill, dtype=values.dtype)
            padded[name][attention_mask] = values
        padded["attention_mask"] = attention_mask.astype(np.int64)
        return padded


# --------------------------------------------------------------------------------------------------------
# Per-concept candidate tables
# --------------------------------------------------------------------------------------------------------


class _Candidates(NamedTuple):
    """The top-`num_shots` candidates of one (concept, sentence concepts) pair, ranked, as Python lists."""

    patch_ids: list[int]  # by decreasing weight, ties by increasing patch id
    weights: list[float]  # p_i
    cumulative_weights: list[float]  # for the inverse-CDF draw


# A patch's `(confidence, contextual concept ids, their confidences)`, as Python values.
_PatchContext = tuple[float, tuple[int, ...], tuple[float, ...]]


def _top(patch_ids: list[int], weights: list[float], num_shots: int) -> list[tuple[float, int]]:
    """The `num_shots` best `(weight, patch id)`: decreasing weight, ties by increasing patch id."""
    return sorted(zip(weights, patch_ids, strict=True), key=lambda item: (-item[0], item[1]))[:num_shots]


class _ConceptTable:
    """Precomputed lookups for one concept, built on its first use.

    Attributes:
        patch_ids: `(n,)` int64, the concept's patches.
        top_patch_ids: The `min(n, num_shots)` best patches by confidence alone (ties by id), a list.
        top_scores: Their confidences, a list.
        entry_patch_ids: `(E,)` int32 (int64 from 2**31 patches on), one entry per (patch, contextual concept)
            of the concept's patches, grouped by contextual concept and, within a group, sorted by decreasing
            key `c_i^con + r_ctx * c_ij^ctx` (ties by increasing patch id).
        entry_negative_keys: `(E,)` float64, minus the key of each entry (increasing within a group).
        groups: contextual concept id -> `(start, end)` of its entries.
    """

    __slots__ = (
        "patch_ids",
        "top_patch_ids",
        "top_scores",
        "entry_patch_ids",
        "entry_negative_keys",
        "groups",
    )

    def __init__(self, gallery: PatchGallery, concept_id: int, r_ctx: float, num_shots: int) -> None:
        patch_ids = np.asarray(gallery.patches_of(concept_id), dtype=np.int64)
        scores = np.asarray(gallery.scores[patch_ids], dtype=np.float64)
        self.patch_ids = patch_ids
        top = np.lexsort((patch_ids, -scores))[:num_shots]
        self.top_patch_ids = patch_ids[top].tolist()
        self.top_scores = scores[top].tolist()

        entry_index, owner = _context_entry_index(gallery.context_offsets, patch_ids)
        context_ids = np.asarray(gallery.context_concept_ids[entry_index], dtype=np.int64)
        keys = scores[owner] + r_ctx * np.asarray(gallery.context_scores[entry_index], dtype=np.float64)
        owner_ids = patch_ids[owner]
        order = np.lexsort((owner_ids, -keys, context_ids))
        context_ids = context_ids[order]
        # int32 ids when they fit: a table costs 12 bytes per context entry of the concept's patches.
        id_dtype = np.int32 if gallery.num_patches < 2**31 else np.int64
        self.entry_patch_ids = owner_ids[order].astype(id_dtype)
        self.entry_negative_keys = -keys[order]
        boundaries = (np.flatnonzero(np.diff(context_ids)) + 1).tolist()
        starts = [0, *boundaries] if len(context_ids) else []
        ends = [*boundaries, len(context_ids)] if len(context_ids) else []
        self.groups = {int(context_ids[start]): (start, end) for start, end in zip(starts, ends, strict=True)}


def _context_entry_index(context_offsets: np.ndarray, patch_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the contextual-concept entries of `patch_ids` in the gallery's CSR arrays.

    Returns:
        `(entry_index, owner)`, both `(E,)` int64: the CSR position of every entry and the index into
        `patch_ids` of the patch it belongs to.
    """
    starts = np.asarray(context_offsets[patch_ids], dtype=np.int64)
    lengths = np.asarray(context_offsets[patch_ids + 1], dtype=np.int64) - starts
    owner = np.repeat(np.arange(len(patch_ids), dtype=np.int64), lengths)
    first_entry = np.cumsum(lengths) - lengths
    entry_index = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - first_entry, lengths)
    return entry_index, owner


class _FifoCache(dict):
    """A dict that forgets its oldest entry when full (results never depend on what it holds)."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size

    def add(self, key: Any, value: Any) -> None:
        if len(self) >= self.max_size:
            del self[next(iter(self))]
        self[key] = value


_MISSING = object()

# A word's forms: `(lower case, folded)`, or `None` for a word that is part of no concept.
_WordForm = tuple[str, str] | None


class CrossModalCutMix:
    r"""Cross-modal CutMix: replaces grounded words of sentences by image patches of a [`PatchGallery`].

    See the module docstring for the method and the interpretation choices.

    Batched, seeded and cheap next to tokenization: the batch is tokenized once by the fast tokenizer's Rust
    backend; each word is looked up by its token ids in a cache of word forms (a word's text is the decoded
    text of its tokens, i.e. the tokenizer's normalized word: lower case and without accents for an uncased
    BERT); candidate distributions are cached per (concept, sentence concepts).

    Candidate selection is exact without scoring every patch of a concept: the `num_shots` best patches by
    confidence alone and, for each sentence concept `j`, the patches whose key `c_i + r_ctx * c_ij` reaches
    the current `num_shots`-th weight are the only ones that can make the cut, because
    `p_i <= c_i + r_ctx * max_{j in G_i} c_ij` (a mean never exceeds its maximum). So a concept with a
    million patches costs about as much as one with a hundred.

    Args:
        gallery ([`PatchGallery`]): The patches and their concepts.
        r_cmc (`float`, defaults to 0.5): Probability of replacing each grounded span, in `[0, 1]`.
        r_ctx (`float`, defaults to 0.5): Weight of the contextual-concept term of `p_i`, `>= 0`.
        num_shots (`int`, defaults to 15): Number of candidate patches per grounded span.
        cache_size (`int`, defaults to 65536): Most entries of each cache (word forms, distributions); the
            oldest entries are dropped first. Results never depend on the caches.

    Example:

    ```python
    >>> cutmix = CrossModalCutMix(gallery, r_cmc=0.5, num_shots=15)
    >>> batch = cutmix(["Two dogs play near a traffic light."], tokenizer, image_token_id=1, generator=0)
    >>> batch[0].mixed_input_ids  # the text's token ids with image_token_id at the visual slots
    >>> visual_features = gallery.get_features(batch.slot_patch_ids)  # one row per visual slot, in order
    ```
    """

    def __init__(
        self,
        gallery: PatchGallery,
        r_cmc: float = 0.5,
        r_ctx: float = 0.5,
        num_shots: int = 15,
        cache_size: int = 65536,
    ) -> None:
        if not 0.0 <= r_cmc <= 1.0:
            raise ValueError(f"r_cmc must be a probability in [0, 1], got {r_cmc!r}.")
        if not r_ctx >= 0.0:
            raise ValueError(f"r_ctx must be >= 0, got {r_ctx!r}.")
        if isinstance(num_shots, bool) or not isinstance(num_shots, int) or num_shots < 1:
            raise ValueError(f"num_shots must be an int >= 1, got {num_shots!r}.")
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size!r}.")
        self.gallery = gallery
        self.r_cmc = float(r_cmc)
        self.r_ctx = float(r_ctx)
        self.num_shots = num_shots
        self.cache_size = cache_size
        self._build_phrase_index()
        self._reset_caches()

    def _reset_caches(self) -> None:
        # Every cache maps an input to a value computed from the gallery and the settings alone, so results
        # never depend on what the caches hold.
        self._tables: dict[int, _ConceptTable] = {}
        # (concept, relevant sentence concepts) -> _Candidates; and the same keyed by all sentence concepts.
        self._distributions = _FifoCache(self.cache_size)
        self._sentence_distributions = _FifoCache(self.cache_size)
        # Word forms by word text (`find_grounded_spans`) and by token ids (calls, for one tokenizer at a time).
        self._text_forms = _FifoCache(self.cache_size)
        self._token_forms = _FifoCache(self.cache_size)
        self._token_forms_backend = None
        # Patch id -> _PatchContext.
        self._patch_context_cache = _FifoCache(self.cache_size)

    # The caches are rebuilt on demand; a pickled instance (e.g. sent to DataLoader workers) leaves them out.
    def __getstate__(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("gallery", "r_cmc", "r_ctx", "num_shots", "cache_size")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._build_phrase_index()
        self._reset_caches()

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(r_cmc={self.r_cmc}, r_ctx={self.r_ctx}, num_shots={self.num_shots}, "
            f"gallery={self.gallery!r})"
        )

    # ---------------------------------------------------------------------------------------------- matching

    def _build_phrase_index(self) -> None:
        # Single-word concepts by folded form; multi-word concepts by their first (lower-case) word, each as
        # (middle words, folded last word, concept id), longest first. Concepts without patches cannot be
        # drawn from, so they are not grounded.
        counts = np.diff(np.asarray(self.gallery.concept_offsets))
        single_word: dict[str, int] = {}
        multi_word: dict[str, list[tuple[tuple[str, ...], str, int]]] = {}
        for concept_id, name in enumerate(self.gallery.concepts):
            if counts[concept_id] == 0:
                continue
            words = normalize_concept(name).split(" ")
            if len(words) == 1:
                single_word[words[0]] = concept_id
            else:
                multi_word.setdefault(words[0], []).append((tuple(words[1:-1]), words[-1], concept_id))
        for phrases in multi_word.values():
            phrases.sort(key=lambda phrase: -len(phrase[0]))
        self._single_word = single_word
        self._multi_word = multi_word
        self._inner_words = set(multi_word) | {
            word for ps in multi_word.values() for p in ps for word in p[0]
        }
        self._last_words = set(single_word) | {p[1] for ps in multi_word.values() for p in ps}

    def _form_of(self, word: str) -> _WordForm:
        lower = word.strip().lower()
        folded = singularize(lower)
        return (lower, folded) if lower in self._inner_words or folded in self._last_words else None

    def _match(self, forms: Sequence[_WordForm], relevant: Iterable[int]) -> list[GroundedSpan]:
        """Longest-first, left-to-right, non-overlapping matching.

        Args:
            forms: The form of every word of the sentence.
            relevant: The increasing indexes of the words whose form is not `None` (the only possible starts).
        """
        spans = []
        num_words = len(forms)
        next_free = 0
        for start in relevant:
            if start < next_free:
                continue
            form = forms[start]
            end = concept_id = -1
            for middle, last, phrase_concept_id in self._multi_word.get(form[0], ()):
                phrase_end = start + len(middle) + 2
                if phrase_end > num_words:
                    continue
                last_form = forms[phrase_end - 1]
                if last_form is None or last_form[1] != last:
                    continue
                if all(
                    (inner := forms[start + 1 + k]) is not None and inner[0] == word
                    for k, word in enumerate(middle)
                ):
                    end, concept_id = phrase_end, phrase_concept_id
                    break
            if end < 0:
                concept_id = self._single_word.get(form[1], -1)
                end = start + 1
            if concept_id >= 0:
                spans.append(GroundedSpan(start, end, concept_id))
                next_free = end
        return spans

    def find_grounded_spans(self, words: Sequence[str]) -> list[GroundedSpan]:
        """Finds the visually grounded spans of a sentence.

        Args:
            words: The words of the sentence (as a pre-tokenizer splits them, punctuation separate).

        Returns:
            The grounded spans: longest match first, left to right, non-overlapping; `start`/`end` index
            `words` (`end` exclusive).
        """
        forms = []
        for word in words:
            form = self._text_forms.get(word, _MISSING)
            if form is _MISSING:
                form = self._form_of(word)
                self._text_forms.add(word, form)
            forms.append(form)
        return self._match(forms, [index for index, form in enumerate(forms) if form is not None])

    # --------------------------------------------------------------------------------------------- sampling

    def _table(self, concept_id: int) -> _ConceptTable:
        table = self._tables.get(concept_id)
        if table is None:
            table = _ConceptTable(self.gallery, concept_id, self.r_ctx, self.num_shots)
            self._tables[concept_id] = table
        return table

    def _patch_contexts(self, patch_ids: list[int]) -> list[_PatchContext]:
        """`(confidence, context concept ids, context confidences)` of patches, as Python values.

        Cached per patch; the missing ones are read from the gallery with one vectorized gather.
        """
        cache = self._patch_context_cache
        found = {patch_id: cache[patch_id] for patch_id in patch_ids if patch_id in cache}
        missing = [patch_id for patch_id in patch_ids if patch_id not in found]
        if missing:
            gallery = self.gallery
            index = np.asarray(missing, dtype=np.int64)
            entry_index, owner = _context_entry_index(gallery.context_offsets, index)
            lengths = np.bincount(owner, minlength=len(missing)).tolist()
            context_ids = gallery.context_concept_ids[entry_index].tolist()
            context_scores = gallery.context_scores[entry_index].astype(np.float64).tolist()
            scores = gallery.scores[index].astype(np.float64).tolist()
            end = 0
            for patch_id, score, length in zip(missing, scores, lengths, strict=True):
                start, end = end, end + length
                found[patch_id] = (score, tuple(context_ids[start:end]), tuple(context_scores[start:end]))
                cache.add(patch_id, found[patch_id])
        return [found[patch_id] for patch_id in patch_ids]

    def _weights(self, patch_ids: list[int], context_ids: tuple[int, ...]) -> list[float]:
        """`p_i = c_i + r_ctx / |G_i| * sum_{j in G_i} c_ij` of each patch, `G_i` its contexts in `context_ids`.

        The sums run over `context_ids` in increasing order, in float64 on float32 values (exact), so the
        mean never exceeds the maximum and a single-context weight equals the sort key of the table entry
        bit for bit: the pruning bound of `_ranked_candidates` holds exactly.
        """
        r_ctx = self.r_ctx
        weights = []
        for score, patch_context_ids, patch_context_scores in self._patch_contexts(patch_ids):
            total, count = 0.0, 0
            for concept_id in context_ids:
                if concept_id in patch_context_ids:
                    total += patch_context_scores[patch_context_ids.index(concept_id)]
                    count += 1
            weights.append(score + r_ctx * (total / count) if count else score)
        return weights

    def _ranked_candidates(self, concept_id: int, context_ids: tuple[int, ...]) -> list[tuple[float, int]]:
        """Exact top-`num_shots` `(p_i, patch id)` of a concept, by decreasing `p_i` then increasing patch id."""
        table = self._table(concept_id)
        num_shots = self.num_shots
        if not context_ids:
            return list(zip(table.top_scores, table.top_patch_ids, strict=True))
        if len(table.patch_ids) <= num_shots:
            pool = table.patch_ids.tolist()
            return _top(pool, self._weights(pool, context_ids), num_shots)

        # A first pool (the best patches by confidence plus the best entries of each sentence concept) gives
        # a lower bound (weight, patch id) on the final num_shots-th candidate. A patch outside the pool can
        # only beat it through an entry whose key reaches the bound; entries are sorted by (key desc, id asc),
        # so those form a prefix of each group.
        groups = [table.groups[j] for j in context_ids]
        pool = set(table.top_patch_ids)
        for start, end in groups:
            pool.update(table.entry_patch_ids[start : min(end, start + num_shots)].tolist())
        pool = sorted(pool)
        pool_weights = self._weights(pool, context_ids)
        ranked = _top(pool, pool_weights, num_shots)
        bound_weight, bound_id = ranked[-1]
        contenders = set()
        for start, end in groups:
            first_unseen = start + num_shots
            if first_unseen >= end:
                continue
            key, patch_id = -table.entry_negative_keys[first_unseen], table.entry_patch_ids[first_unseen]
            if key < bound_weight or (key == bound_weight and patch_id > bound_id):
                continue  # the best entry outside the pool cannot make the cut, nor can those after it
            negative_keys = table.entry_negative_keys[first_unseen:end]
            ids = table.entry_patch_ids[first_unseen:end]
            above = int(np.searchsorted(negative_keys, -bound_weight, side="left"))
            tied = int(np.searchsorted(negative_keys, -bound_weight, side="right"))
            stop = above + int(np.searchsorted(ids[above:tied], bound_id, side="right"))
            contenders.update(ids[:stop].tolist())
        contenders = sorted(contenders.difference(pool))
        if not contenders:
            return ranked
        return _top(pool + contenders, pool_weights + self._weights(contenders, context_ids), num_shots)

    def _candidates_for(self, concept_id: int, sentence_concepts: Iterable[int]) -> _Candidates:
        table = self._table(concept_id)
        # Only the sentence concepts that are contextual concepts of some patch of this concept matter.
        context_ids = tuple(sorted({j for j in sentence_concepts if j in table.groups}))
        key = (concept_id, context_ids)
        candidates = self._distributions.get(key)
        if candidates is None:
            ranked = self._ranked_candidates(concept_id, context_ids)
            weights = [weight for weight, _ in ranked]
            cumulative = list(itertools.accumulate(weights))
            if cumulative and cumulative[-1] <= 0.0:
                cumulative = [float(rank) for rank in range(1, len(weights) + 1)]  # all weights 0: uniform
            candidates = _Candidates([patch_id for _, patch_id in ranked], weights, cumulative)
            self._distributions.add(key, candidates)
        return candidates

    def candidate_distribution(
        self, concept_id: int, sentence_concept_ids: Iterable[int] = ()
    ) -> tuple[np.ndarray, np.ndarray]:
        """The distribution a grounded span of `concept_id` draws its patch from.

        Args:
            concept_id: Concept of the span.
            sentence_concept_ids: Concepts grounded in the sentence (duplicates and `concept_id` itself are
                allowed and have no effect).

        Returns:
            `(patch_ids, probabilities)`: `(m,)` int64 and `(m,)` float64 with `m = min(num_shots, number
            of patches of the concept)`, ranked by decreasing `p_i` (ties by increasing patch id);
            probabilities are `p_i / sum(p)` over the candidates.

        Raises:
            ValueError: If the concept id is out of range or the concept has no patch.
        """
        concept_id = int(concept_id)
        if not 0 <= concept_id < self.gallery.num_concepts:
            raise ValueError(f"concept_id {concept_id} is out of range [0, {self.gallery.num_concepts}).")
        if len(self.gallery.patches_of(concept_id)) == 0:
            raise ValueError(f"Concept {self.gallery.concepts[concept_id]!r} has no patch in the gallery.")
        candidates = self._candidates_for(concept_id, [int(j) for j in sentence_concept_ids])
        weights = np.asarray(candidates.weights, dtype=np.float64)
        if weights.sum() <= 0.0:
            weights = np.ones_like(weights)  # all weights 0: uniform
        return np.asarray(candidates.patch_ids, dtype=np.int64), weights / weights.sum()

    # ------------------------------------------------------------------------------------------------- call

    def __call__(
        self,
        texts: Sequence[str],
        tokenizer: Any,
        image_token_id: int,
        generator: np.random.Generator | int | None = None,
        max_length: int | None = 80,
        add_special_tokens: bool = True,
    ) -> CutMixBatch:
        """Applies CMC to a batch of sentences.

        Args:
            texts: The `B` sentences.
            tokenizer: A fast tokenizer (`PreTrainedTokenizerFast`-like, with a `backend_tokenizer`) or a
                `tokenizers.Tokenizer`. Its backend padding/truncation settings are suspended during the call.
            image_token_id: Token id written at the visual slots of S.
            generator: A `numpy.random.Generator` (advanced in place), a seed, or `None` for fresh entropy.
            max_length: Longest output sequence, in tokens including special tokens; `None` keeps everything.
            add_special_tokens: Whether to add the tokenizer's special tokens (`[CLS]`, `[SEP]`).

        Returns:
            A [`CutMixBatch`]; every sentence has `len(S) == len(T) <= max_length`.

        Raises:
            ValueError: If `texts` is a single string, the tokenizer is not fast, or `max_length` is shorter
                than the special tokens.
        """
        if isinstance(texts, str):
            raise ValueError("`texts` must be a sequence of sentences, not a single string.")
        texts = list(texts)
        rng = generator if isinstance(generator, np.random.Generator) else np.random.default_rng(generator)
        backend, encodings = _encode_batch(tokenizer, texts, add_special_tokens)
        if backend is not self._token_forms_backend:
            self._token_forms = _FifoCache(self.cache_size)
            self._token_forms_backend = backend
        truncate_left = getattr(tokenizer, "truncation_side", "right") == "left"

        # Pass 1, per sentence: truncation window and visible grounded spans, appended to flat lists.
        batch = _BatchBuilder()
        token_ids = batch.token_ids
        for encoding in encodings:
            ids = encoding.ids
            word_ids = encoding.word_ids
            num_tokens = len(ids)
            # Special tokens added by the post-processor have no word; they lead and trail the content.
            content_start = 0
            while content_start < num_tokens and word_ids[content_start] is None:
                content_start += 1
            content_end = num_tokens
            while content_end > content_start and word_ids[content_end - 1] is None:
                content_end -= 1
            window_start, window_end = content_start, content_end
            if max_length is not None and num_tokens > max_length:
                # What the tokenizer's own truncation keeps: every special token, the content cut to fit.
                num_special = num_tokens - (content_end - content_start)
                if max_length < num_special:
                    raise ValueError(
                        f"max_length={max_length} is shorter than the {num_special} special tokens."
                    )
                if truncate_left:
                    window_start = content_end - (max_length - num_special)
                else:
                    window_end = content_start + (max_length - num_special)
                token_ids += ids[:content_start]
                token_ids += ids[window_start:window_end]
                token_ids += ids[content_end:]
            else:
                token_ids += ids
            batch.sequence_ends.append(len(token_ids))
            shift = content_start - window_start
            for span, first, end in self._grounded_token_spans(ids, word_ids, content_start, content_end):
                start, stop = max(first, window_start), min(end, window_end)
                if start < stop:
                    batch.add_span(span, start + shift, stop + shift, first, end - 1)
            batch.span_ends.append(len(batch.concept_ids))

        # Pass 2: one batched draw decides every replacement, one more picks every patch.
        concept_ids, span_ends = batch.concept_ids, batch.span_ends
        batch.replaced = np.flatnonzero(rng.random(len(concept_ids)) < self.r_cmc).tolist()
        uniforms = rng.random(len(batch.replaced)).tolist()
        sentence = -1
        for span, uniform in zip(batch.replaced, uniforms, strict=True):
            if sentence < 0 or span >= span_ends[sentence]:  # the first span of a new sentence
                sentence = bisect.bisect_right(span_ends, span)
                encoding = encodings[sentence]
                first_span = span_ends[sentence - 1] if sentence else 0
                sentence_concepts = frozenset(concept_ids[first_span : span_ends[sentence]])
            key = (concept_ids[span], sentence_concepts)
            candidates = self._sentence_distributions.get(key)
            if candidates is None:
                candidates = self._candidates_for(concept_ids[span], sentence_concepts)
                self._sentence_distributions.add(key, candidates)
            cumulative = candidates.cumulative_weights
            position = bisect.bisect_right(cumulative, uniform * cumulative[-1])
            batch.patch_ids.append(candidates.patch_ids[min(position, len(cumulative) - 1)])
            batch.char_start.append(encoding.token_to_chars(batch.first_token[span])[0])
            batch.char_end.append(encoding.token_to_chars(batch.last_token[span])[1])
        return batch.build(texts, image_token_id)

    def _grounded_token_spans(
        self, ids: list[int], word_ids: list[int | None], content_start: int, content_end: int
    ) -> list[tuple[GroundedSpan, int, int]]:
        """Grounded spans of one encoded sentence, with their token range `[first, end)` in the encoding.

        Words are runs of equal word ids; each is looked up by its token ids in the word-form cache (its text,
        on a miss, is the decoded text of its tokens).
        """
        if content_start == content_end:
            return []
        word_starts = [content_start]
        word_starts += [t for t in range(content_start + 1, content_end) if word_ids[t] != word_ids[t - 1]]
        word_starts.append(content_end)
        forms: list[_WordForm] = [None] * (len(word_starts) - 1)
        relevant = []
        cache = self._token_forms
        for index in range(len(forms)):
            start, end = word_starts[index], word_starts[index + 1]
            key = ids[start] if end == start + 1 else tuple(ids[start:end])
            form = cache.get(key, _MISSING)
            if form is _MISSING:
                tokens = [key] if end == start + 1 else list(key)
                form = self._form_of(self._token_forms_backend.decode(tokens, skip_special_tokens=False))
                cache.add(key, form)
            if form is not None:
                forms[index] = form
                relevant.append(index)
        if not relevant:
            return []
        return [
            (span, word_starts[span.start], word_starts[span.end]) for span in self._match(forms, relevant)
        ]


class _BatchBuilder:
    """The flat lists a [`CutMixBatch`] is built from: appended per sentence, converted to arrays once."""

    def __init__(self) -> None:
        self.token_ids: list[int] = []  # T of every sentence, concatenated
        self.sequence_ends: list[int] = []  # end of each sentence in `token_ids`
        self.span_ends: list[int] = []  # end of each sentence's spans in the span lists
        # One entry per visible grounded span.
        self.word_start: list[int] = []
        self.word_end: list[int] = []
        self.concept_ids: list[int] = []
        self.token_start: list[int] = []  # in the sentence's truncated sequence
        self.token_end: list[int] = []
        self.first_token: list[
            int
        ] = []  # first and last token of the whole span, in the untruncated encoding
        self.last_token: list[int] = []
        # One entry per replaced span: its index in the span lists, its patch and characters.
        self.replaced: list[int] = []
        self.patch_ids: list[int] = []
        self.char_start: list[int] = []
        self.char_end: list[int] = []

    def add_span(
        self, span: GroundedSpan, token_start: int, token_end: int, first_token: int, last_token: int
    ) -> None:
        self.word_start.append(span.start)
        self.word_end.append(span.end)
        self.concept_ids.append(span.concept_id)
        self.token_start.append(token_start)
        self.token_end.append(token_end)
        self.first_token.append(first_token)
        self.last_token.append(last_token)

    def build(self, texts: list[str], image_token_id: int) -> CutMixBatch:
        """Converts the lists to arrays and derives the slots, vectorized."""

        def as_array(values: list[int]) -> np.ndarray:
            return np.array(values, dtype=np.int64).reshape(-1)

        input_ids = as_array(self.token_ids)
        sequence_offsets = as_array([0, *self.sequence_ends])
        span_offsets = as_array([0, *self.span_ends])
        token_start, token_end = as_array(self.token_start), as_array(self.token_end)
        replaced = as_array(self.replaced)
        span_patch_ids, span_char_start, span_char_end = np.full(
            (3, len(self.concept_ids)), -1, dtype=np.int64
        )
        span_patch_ids[replaced] = self.patch_ids
        span_char_start[replaced] = self.char_start
        span_char_end[replaced] = self.char_end

        # Every token of a replaced span becomes a slot holding the span's patch.
        replaced_sentence = np.repeat(np.arange(len(texts)), np.diff(span_offsets))[replaced]
        widths = token_end[replaced] - token_start[replaced]
        first_slot = sequence_offsets[replaced_sentence] + token_start[replaced]
        slot_positions = np.arange(int(widths.sum())) + np.repeat(
            first_slot - (np.cumsum(widths) - widths), widths
        )
        visual_slot_mask = np.zeros(len(input_ids), dtype=bool)
        visual_slot_mask[slot_positions] = True
        mixed_input_ids = input_ids.copy()
        mixed_input_ids[slot_positions] = image_token_id
        slots_per_sentence = np.bincount(replaced_sentence, weights=widths, minlength=len(texts)).astype(
            np.int64
        )
        return CutMixBatch(
            input_ids=input_ids,
            mixed_input_ids=mixed_input_ids,
            visual_slot_mask=visual_slot_mask,
            sequence_offsets=sequence_offsets,
            slot_patch_ids=np.repeat(span_patch_ids[replaced], widths),
            slot_offsets=np.concatenate([[0], np.cumsum(slots_per_sentence)]).astype(np.int64),
            span_offsets=span_offsets,
            span_word_start=as_array(self.word_start),
            span_word_end=as_array(self.word_end),
            span_token_start=token_start,
            span_token_end=token_end,
            span_concept_ids=as_array(self.concept_ids),
            span_patch_ids=span_patch_ids,
            span_char_start=span_char_start,
            span_char_end=span_char_end,
            texts=texts,
        )


def _encode_batch(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> tuple[Any, list[Any]]:
    """Tokenizes `texts` once with the Rust backend, without padding or truncation.

    Returns:
        `(backend, encodings)`: the backend `tokenizers.Tokenizer` and the `tokenizers.Encoding` of each text.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None and hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "no_truncation"):
        backend = tokenizer  # a `tokenizers.Tokenizer`
    if backend is None or not getattr(tokenizer, "is_fast", True):
        raise ValueError(
            f"Cross-modal CutMix needs a fast tokenizer (word alignment comes from `Encoding.word_ids`), got "
            f"{type(tokenizer).__name__}. Load it with `AutoTokenizer.from_pretrained(..., use_fast=True)`."
        )
    # Tokenizer files may enable padding/truncation on the backend (and `transformers` leaves its last
    # setting there); CMC needs the complete, unpadded encodings, so suspend both and restore them after.
    truncation, padding = backend.truncation, backend.padding
    if truncation is not None:
        backend.no_truncation()
    if padding is not None:
        backend.no_padding()
    try:
        return backend, backend.encode_batch(texts, add_special_tokens=add_special_tokens)
    finally:
        if truncation is not None:
            backend.enable_truncation(**truncation)
        if padding is not None:
            backend.enable_padding(**padding)
