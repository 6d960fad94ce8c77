"""A picture of cross-modal CutMix: sentences drawn with the image patches that replaced their words.

Each sentence is one row: its words left to right, and in place of every replaced word (or multi-word
span) the crop of the patch that replaced it, read from the image file when its path is known, otherwise a
tile naming the concept and the patch. Rendered with matplotlib to PNG (or any format matplotlib writes).
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .cross_modal_cutmix import CutMixResult
from .patch_gallery import PatchGallery


def word_character_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """Character span `(start, end)` in `text` of every word of the tokenizer's pre-tokenizer, in order."""
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans: dict[int, list[int]] = {}
    for word_id, (start, end) in zip(encoding.word_ids(), encoding["offset_mapping"], strict=True):
        if word_id is None:
            continue
        span = spans.setdefault(word_id, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return [tuple(spans[word_id]) for word_id in sorted(spans)]


def _crop(gallery: PatchGallery, patch_id: int, image_paths: Mapping[str, str]) -> np.ndarray | None:
    path = image_paths.get(gallery.image_id_of(patch_id)) or gallery.image_path_of(patch_id)
    if path is None or not os.path.isfile(path):
        return None
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        x1, y1, x2, y2 = np.asarray(gallery.get_boxes([patch_id]), dtype=np.float64)[0]
        box = (
            int(x1 * width),
            int(y1 * height),
            max(int(np.ceil(x2 * width)), int(x1 * width) + 1),
            max(int(np.ceil(y2 * height)), int(y1 * height) + 1),
        )
        return np.asarray(image.crop(box))


def render_cutmix(
    texts: Sequence[str],
    results: Sequence[CutMixResult],
    tokenizer,
    gallery: PatchGallery,
    output_path: str | os.PathLike,
    image_paths: Mapping[str, str] | None = None,
) -> Path:
    """Draws each sentence with the patches that replaced its words and writes the figure.

    Args:
        texts: the sentences given to cross-modal CutMix.
        results: its output for them (`CrossModalCutMix.__call__` or the processor's CMC).
        tokenizer: the fast tokenizer CMC used (its words are the units that were replaced).
        gallery: the gallery the patches come from.
        output_path: the image file to write (`.png`, `.svg`, `.pdf`, ...); written atomically.
        image_paths: image id -> image file, to show real crops (defaults to the paths the gallery recorded);
            patches whose image file is unknown are drawn as labelled tiles.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(texts) != len(results):
        raise ValueError(
            f"Got {len(texts)} texts and {len(results)} CutMix results; expected one result per text."
        )
    image_paths = dict(image_paths or {})
    concepts = gallery.concepts
    figure = plt.figure(figsize=(12, 0.9 * len(texts) + 0.6))
    axis = figure.add_axes([0, 0, 1, 1])
    axis.set_xlim(0, 100)
    axis.set_ylim(len(texts) + 0.2, 0)
    axis.axis("off")
    for row, (text, result) in enumerate(zip(texts, results, strict=True)):
        words = word_character_spans(tokenizer, text)
        replaced = {span.word_start: span for span in result.replaced_spans}
        x, index = 1.0, 0
        while index < len(words):
            span = replaced.get(index)
            if span is None:
                word = text[words[index][0] : words[index][1]]
                axis.text(x, row + 0.5, word, va="center", fontsize=11)
                x += 1.2 * len(word) + 1.0
                index += 1
                continue
            crop = _crop(gallery, span.patch_id, image_paths)
            if crop is not None:
                axis.imshow(crop, extent=(x, x + 6, row + 0.9, row + 0.1), aspect="auto")
            else:
                axis.add_patch(plt.Rectangle((x, row + 0.1), 6, 0.8, color="#cfe3f7"))
                axis.text(
                    x + 3,
                    row + 0.5,
                    f"{concepts[span.concept_id]}\n#{span.patch_id}",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
            axis.text(x + 3, row + 0.98, span.text, ha="center", va="top", fontsize=6, color="gray")
            x += 7.0
            index = span.word_end
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = output_path.with_name(f".{output_path.stem}.tmp{output_path.suffix}")
    try:
        figure.savefig(tmp_path, dpi=120)
        os.replace(tmp_path, output_path)
    finally:
        plt.close(figure)
        tmp_path.unlink(missing_ok=True)
    return output_path
