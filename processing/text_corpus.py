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
"""Text-only corpora for VALP: readers and a `datasets` text dataset (`vlmixer build-text-corpus`).

Sources (`TextSource(format, path)`):

- `"coco"`: a COCO captions JSON (`captions_train2017.json`): the `caption` of every entry of `annotations`,
  in file order. The image ids are not kept: VLMixer pre-trains on text alone.
- `"cc3m"`: a Conceptual Captions TSV (`Train_GCC-training.tsv`), one `caption<TAB>url` per line (no header).
  Only the caption is kept.
- `"text"`: plain text (BookCorpus-style), one sentence or paragraph per line; each line is split into
  sentences with [`split_sentences`] (unless `split=False`). Blank lines are skipped.

Every text is whitespace-normalized ([`normalize_whitespace`]: runs of whitespace, newlines and tabs included,
become one space; the ends are stripped); empty texts are dropped, and texts shorter than `min_words` words
too. With `deduplicate=True` (the default) a text that was already seen (exactly, after the normalization) is
dropped: the first occurrence is kept, in source order.

The corpus is a `datasets` dataset with the columns `text` (str) and `source` (the source's file name).
[`build_text_corpus`] writes it to disk (memory-mapped Arrow, loaded with `datasets.load_from_disk`) or, with
`streaming=True`, returns a `datasets.IterableDataset` that reads the files lazily, for corpora that do not fit
in memory or on disk twice. De-duplication keeps an 8-byte hash of every distinct text seen (about 70 bytes of
memory per distinct text; pass `deduplicate=False` for corpora of hundreds of millions of sentences). So that
it is exact across files, the sources are read in order by one generator: the streaming dataset has a single
shard (one `DataLoader` worker reads it).

**Sentence splitting** ([`split_sentences`]) is rule-based: a sentence ends at `.`, `!` or `?` (repeated, and
followed by closing quotes or brackets) when whitespace and then an upper-case letter, a digit or an opening
quote or bracket follow. It does not end after a common abbreviation (`Mr.`, `Dr.`, `St.`, `e.g.`, `etc.`,
`vs.`, ...), after a single capital letter (an initial: `J. R. R. Tolkien`), or inside a number (`3.14`). It
is meant for narrative text like BookCorpus; it does not handle every edge case a trained splitter would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets.exceptions import DatasetGenerationError

from conversion.checkpoint_io import write_directory_atomically


__all__ = [
    "TEXT_CORPUS_FEATURES",
    "TEXT_FORMATS",
    "TextSource",
    "build_text_corpus",
    "iter_texts",
    "main",
    "normalize_whitespace",
    "read_cc3m_tsv",
    "read_coco_captions",
    "read_plain_text",
    "split_sentences",
]

TEXT_FORMATS = ("coco", "cc3m", "text")
TEXT_CORPUS_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "source": datasets.Value("string")}
)

_WHITESPACE = re.compile(r"\s+")
# End punctuation, optional closing quotes/brackets, whitespace, then what may start a sentence.
_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[]?[A-Z0-9])")
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al fig no vol approx dept est gen gov lt col capt sgt
    rev hon jan feb mar apr jun jul aug sep sept oct nov dec inc ltd co corp u.s u.k a.m p.m""".split()
)


def normalize_whitespace(text: str) -> str:
    """Collapses every run of whitespace (spaces, tabs, newlines) to one space and strips the ends."""
    return _WHITESPACE.sub(" ", text).strip()


def split_sentences(text: str) -> list[str]:
    """Splits a paragraph into sentences with the rules of the module docstring.

    Args:
        text: A paragraph (whitespace is normalized first).

    Returns:
        The sentences, whitespace-normalized, in order; `[]` for blank text.

    Example:

    ```python
    >>> split_sentences('Mr. Smith met Dr. Jones at 3.30 p.m. on Friday. "Hello!" she said. It rained.')
    ['Mr. Smith met Dr. Jones at 3.30 p.m. on Friday.', '"Hello!" she said.', 'It rained.']
    ```
    """
    text = normalize_whitespace(text)
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(text):
        if match.group().startswith(".") and _is_abbreviation(text, match.start()):
            continue
        sentences.append(text[start : match.end()].strip())
        start = match.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [sentence for sentence in sentences if sentence]


def _is_abbreviation(text: str, period: int) -> bool:
    """Whether the `.` at `text[period]` ends an abbreviation or an initial rather than a sentence."""
    word_start = text.rfind(" ", 0, period) + 1
    word = text[word_start:period].lstrip("\"'\u201c\u2018([")
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial
    return word.lower() in _ABBREVIATIONS


@dataclass(frozen=True)
class TextSource:
    """One input of a text corpus.

    Attributes:
        format: `"coco"` (captions JSON), `"cc3m"` (caption<TAB>url TSV) or `"text"` (plain text lines).
        path: The file.
    """

    format: str
    path: str

    def __post_init__(self) -> None:
        if self.format not in TEXT_FORMATS:
            raise ValueError(
                f"Unknown text corpus format {self.format!r} for {self.path}; expected one of {TEXT_FORMATS}."
            )
        object.__setattr__(self, "path", os.fspath(self.path))


def read_coco_captions(path: str | os.PathLike) -> Iterator[str]:
    """Yields the captions of a COCO captions JSON (`annotations[i].caption`), in file order.

    Raises:
        ValueError: If the file is not JSON, has no `annotations` list, or an annotation has no string
            `caption` (the message names the file and the annotation index).
    """
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a COCO captions JSON file: {error}") from error
    annotations = content.get("annotations") if isinstance(content, dict) else None
    if not isinstance(annotations, list):
        raise ValueError(f"{path} has no `annotations` list; expected a COCO captions JSON file.")
    for index, annotation in enumerate(annotations):
        caption = annotation.get("caption") if isinstance(annotation, dict) else None
        if not isinstance(caption, str):
            raise ValueError(
                f"{path}: annotations[{index}] has no string `caption`; got {annotation!r:.200}."
            )
        yield caption


def read_cc3m_tsv(path: str | os.PathLike) -> Iterator[str]:
    """Yields the captions of a Conceptual Captions TSV (`caption<TAB>url` lines), in file order.

    Raises:
        ValueError: If a non-blank line does not have exactly 2 tab-separated fields (names file and line).
    """
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != 2:
                raise ValueError(
                    f"{path}, line {line_number}: has {len(fields)} tab-separated field(s), expected 2 "
                    "(caption, url)."
                )
            yield fields[0]


def read_plain_text(path: str | os.PathLike, split: bool = True) -> Iterator[str]:
    """Yields the sentences of a plain text file (one sentence or paragraph per line).

    Args:
        path: The file (UTF-8).
        split: Split each line into sentences with [`split_sentences`]; otherwise each line is one text.
    """
    with open(path, encoding="utf-8") as file:
        for line in file:
            if not line.strip():
                continue
            if split:
                yield from split_sentences(line)
            else:
                yield line


_READERS = {"coco": read_coco_captions, "cc3m": read_cc3m_tsv}


def iter_texts(
    sources: Sequence[TextSource],
    *,
    split: bool = True,
    deduplicate: bool = True,
    min_words: int = 1,
) -> Iterator[dict[str, str]]:
    """Yields the examples `{"text", "source"}` of the sources, normalized, filtered and de-duplicated.

    Args:
        sources: The inputs, read in order.
        split: Split plain text lines into sentences.
        deduplicate: Drop a text seen before (exact match after whitespace normalization).
        min_words: Drop texts with fewer words (whitespace-separated tokens).
    """
    seen: set[bytes] = set()
    for source in sources:
        if not isinstance(source, TextSource):
            source = TextSource(*source)
        name = Path(source.path).name
        if source.format == "text":
            texts: Iterable[str] = read_plain_text(source.path, split=split)
        else:
            texts = _READERS[source.format](source.path)
        for text in texts:
            text = normalize_whitespace(text)
            if not text or text.count(" ") + 1 < min_words:
                continue
            if deduplicate:
                key = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
                if key in seen:
                    continue
                seen.add(key)
            yield {"text": text, "source": name}


def _generate(sources: tuple[tuple[str, str], ...], split: bool, deduplicate: bool, min_words: int):
    # `datasets` generators take plain picklable arguments. `sources` is a tuple, not a list: `datasets` would
    # split a list into shards read by separate generators, and the de-duplication would stop at their borders.
    yield from iter_texts(
        [TextSource(*source) for source in sources], split=split, deduplicate=deduplicate, min_words=min_words
    )


def build_text_corpus(
    sources: Sequence[TextSource | tuple[str, str]],
    output_dir: str | os.PathLike | None = None,
    *,
    streaming: bool = False,
    split: bool = True,
    deduplicate: bool = True,
    min_words: int = 1,
    overwrite: bool = False,
) -> datasets.Dataset | datasets.IterableDataset:
    """Builds the text corpus of the sources (see the module docstring).

    Args:
        sources: `TextSource`s or `(format, path)` pairs, read in order.
        output_dir: Where to save the corpus (`save_to_disk`, written atomically). Required unless `streaming`.
        streaming: Return a lazy `datasets.IterableDataset` over the files instead (nothing is written).
        split: Split plain text lines into sentences.
        deduplicate: Drop repeated texts (exact, after whitespace normalization).
        min_words: Drop texts with fewer words.
        overwrite: Replace a non-empty `output_dir`.

    Returns:
        The saved corpus opened memory-mapped (`datasets.Dataset`, columns `text` and `source`), or the
        `datasets.IterableDataset` when streaming.

    Raises:
        ValueError: For an unknown format, a missing file, a malformed input (naming file and line), or a
            non-empty `output_dir`.
    """
    sources = [source if isinstance(source, TextSource) else TextSource(*source) for source in sources]
    if not sources:
        raise ValueError("build_text_corpus needs at least one source.")
    for source in sources:
        if not os.path.isfile(source.path):
            raise ValueError(f"The {source.format} source {source.path} does not exist or is not a file.")
    gen_kwargs = {
        "sources": tuple((source.format, source.path) for source in sources),
        "split": split,
        "deduplicate": deduplicate,
        "min_words": min_words,
    }
    if streaming:
        return datasets.IterableDataset.from_generator(
            _generate, features=TEXT_CORPUS_FEATURES, gen_kwargs=gen_kwargs
        )
    if output_dir is None:
        raise ValueError("build_text_corpus needs output_dir unless streaming=True.")

    def write(tmp_dir: Path) -> None:
        # A private cache folder: `from_generator` keys its cache on the code and arguments, not on the
        # contents of the files, so a shared cache could return the corpus of an earlier version of a file.
        with tempfile.TemporaryDirectory(prefix=".cache-", dir=tmp_dir.parent) as cache_dir:
            try:
                corpus = datasets.Dataset.from_generator(
                    _generate, features=TEXT_CORPUS_FEATURES, gen_kwargs=gen_kwargs, cache_dir=cache_dir
                )
            except DatasetGenerationError as error:
                # Surface the reader's own error (which names the file and line), not the wrapper.
                if isinstance(error.__cause__, ValueError):
                    raise error.__cause__ from None
                raise
            corpus.save_to_disk(str(tmp_dir))

    write_directory_atomically(output_dir, write, overwrite=overwrite)
    return datasets.load_from_disk(os.fspath(output_dir))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="vlmixer build-text-corpus",
        description="Build a de-duplicated text corpus (a `datasets` dataset with `text` and `source` columns) "
        "from COCO captions, Conceptual Captions and plain text files.",
    )
    parser.add_argument("--coco", action="append", default=[], help="A COCO captions JSON (repeatable).")
    parser.add_argument("--cc3m", action="append", default=[], help="A Conceptual Captions TSV (repeatable).")
    parser.add_argument(
        "--text",
        action="append",
        default=[],
        help="A plain text file, one sentence or paragraph per line (repeatable).",
    )
    parser.add_argument("--output", "--output_dir", dest="output", required=True, help="The corpus folder.")
    parser.add_argument(
        "--no-split",
        "--no_split",
        dest="split",
        action="store_false",
        help="Keep plain text lines whole instead of splitting them into sentences.",
    )
    parser.add_argument(
        "--no-dedup", "--no_dedup", dest="deduplicate", action="store_false", help="Keep repeated texts."
    )
    parser.add_argument(
        "--min-words",
        "--min_words",
        dest="min_words",
        type=int,
        default=1,
        help="Drop texts with fewer words.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output folder.")
    args = parser.parse_args(argv)
    sources = (
        [TextSource("coco", path) for path in args.coco]
        + [TextSource("cc3m", path) for path in args.cc3m]
        + [TextSource("text", path) for path in args.text]
    )
    if not sources:
        parser.error("give at least one --coco, --cc3m or --text file")
    corpus = build_text_corpus(
        sources,
        args.output,
        split=args.split,
        deduplicate=args.deduplicate,
        min_words=args.min_words,
        overwrite=args.overwrite,
    )
    print(f"wrote a text corpus of {len(corpus)} texts to {args.output}")


if __name__ == "__main__":
    main()
