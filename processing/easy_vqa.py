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
"""easy-VQA, the small real VQA dataset of the demo: reading it, and writing it in the VQA v2 layout.

easy-VQA (`pip install easy-vqa`, MIT, by Victor Zhou) ships its data inside the package: 4,000 train and
1,000 test 64 x 64 PNG images of one coloured shape each, and 38,575 train + 9,673 test questions with one
answer each, among 13 answers (`yes`, `no`, 3 shapes: `circle`, `rectangle`, `triangle`, and 8 colours:
`black`, `blue`, `brown`, `gray`, `green`, `red`, `teal`, `yellow`). The package's API is
`easy_vqa.get_train_questions()` / `get_test_questions()` (three parallel lists: question texts, answers,
integer image ids), `get_train_image_paths()` / `get_test_image_paths()` (`{image_id: path}`) and
`get_answers()`. Things to know about the data:

- Image ids are the PNG file names, `0..3999` in train and `0..999` in test: **the two splits reuse the same
  ids**. VQA files keep easy-VQA's integer ids as `image_id` (as VQA keeps COCO's); a region store holding
  both splits names image `i` of split `s` [`store_image_id`]`(s, i) == f"{s}-{i}"` (`"train-12"`,
  `"test-3"`).
- Questions have no ids; [`load_easy_vqa`] numbers them as VQA v2 does, `question_id = image_id * 1000 + k`
  for the `k`-th question of the image in file order (an image has at most 21 questions), so question ids are
  unique within a split (not across splits, like the image ids).
- Questions are generated from 24 templates, all lower case: 8 ask for the colour or the shape ("what color is
  the triangle?", "what shape is present?", "what is the blue shape?"), 16 are yes/no questions about a colour
  or a shape, half of them negated ("is there not a red shape?", "does the image not contain a circle?").
  About 74% of the answers are `yes` / `no`. There are only 107 distinct train question texts (273 distinct
  question-answer pairs), so a de-duplicated text corpus of them is tiny: build it with `deduplicate=False`.

[`export_vqa_v2`] writes questions in the standard VQA v2 file layout (`v2_OpenEnded_mscoco_<split>_questions
.json`, `v2_mscoco_<split>_annotations.json`) with the single answer repeated as the ten human answers (so its
VQA soft score is 1.0), so that the VQA v2 reader reads easy-VQA like real VQA. [`split_unpaired`] cuts the
train images into two disjoint halves for unpaired pre-training (the regions of one half make the image
corpus, the questions of the other the text corpus) and [`write_text_corpus`] writes the text half for
`processing.text_corpus.build_text_corpus`. Every file is written atomically (a temporary name, then a rename).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


__all__ = [
    "COLORS",
    "EASY_VQA_SPLITS",
    "EasyVQAQuestion",
    "SHAPES",
    "export_vqa_v2",
    "load_easy_vqa",
    "question_type",
    "split_unpaired",
    "store_image_id",
    "store_image_paths",
    "vqa_v2_file_names",
    "write_text_corpus",
]

EASY_VQA_SPLITS = ("train", "test")
#: easy-VQA's colour answers.
COLORS = ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow")
#: easy-VQA's shape answers.
SHAPES = ("circle", "rectangle", "triangle")

_NUM_VQA_ANSWERS = 10  # human answers per VQA v2 question
_CONCEPT_WORD = re.compile(r"\b(?:" + "|".join(COLORS + SHAPES) + r")\b")


@dataclass(frozen=True)
class EasyVQAQuestion:
    """One easy-VQA question.

    Attributes:
        question_id: `image_id * 1000 + k` for the `k`-th question of the image (file order); unique in a split.
        question: The question text, as in easy-VQA (lower case, ends with `?`).
        answer: Its one answer, one of the 13 of `easy_vqa.get_answers()`.
        image_id: easy-VQA's integer image id (the PNG file name) within the split.
        split: `"train"` or `"test"`.
    """

    question_id: int
    question: str
    answer: str
    image_id: int
    split: str


def _easy_vqa_module():
    try:
        import easy_vqa
    except ImportError as error:
        raise ImportError(
            "easy-VQA is not installed; install it with `pip install easy-vqa` (or the `demo` extra)."
        ) from error
    return easy_vqa


def _check_split(split: str) -> str:
    if split not in EASY_VQA_SPLITS:
        raise ValueError(f"Unknown easy-VQA split {split!r}; expected one of {EASY_VQA_SPLITS}.")
    return split


def store_image_id(split: str, image_id: int) -> str:
    """The region-store key of easy-VQA image `image_id` of `split`: `f"{split}-{image_id}"`.

    VQA files keep easy-VQA's integer `image_id`; since train and test reuse the same integers, a store
    holding both splits needs the split in the key. This is the one mapping from a VQA `image_id` to a store key.

    Example:

    ```python
    >>> store_image_id("train", 12), store_image_id("test", 3)
    ('train-12', 'test-3')
    ```
    """
    _check_split(split)
    if isinstance(image_id, bool) or not isinstance(image_id, (int, np.integer)) or image_id < 0:
        raise ValueError(f"image_id must be a non-negative int (easy-VQA's image id), got {image_id!r}.")
    return f"{split}-{int(image_id)}"


def load_easy_vqa(split: str) -> tuple[list[EasyVQAQuestion], dict[int, str]]:
    """Reads one split of the installed easy-VQA package.

    Args:
        split: `"train"` (38,575 questions, 4,000 images) or `"test"` (9,673 questions, 1,000 images).

    Returns:
        `(questions, image_paths)`: the questions in file order, and `{image_id: absolute path of the PNG}`
        sorted by image id.

    Raises:
        ValueError: If `split` is unknown, or a question refers to an image that has no file.
        ImportError: If easy-VQA is not installed.
    """
    _check_split(split)
    easy_vqa = _easy_vqa_module()
    texts, answers, image_ids = getattr(easy_vqa, f"get_{split}_questions")()
    paths = getattr(easy_vqa, f"get_{split}_image_paths")()
    image_paths = {int(image_id): os.fspath(paths[image_id]) for image_id in sorted(paths)}
    questions, counts = [], {}
    for text, answer, image_id in zip(texts, answers, image_ids, strict=True):
        image_id = int(image_id)
        if image_id not in image_paths:
            raise ValueError(
                f"easy-VQA {split}: the question {text!r} refers to image {image_id}, which has no file."
            )
        k = counts.get(image_id, 0)
        counts[image_id] = k + 1
        questions.append(EasyVQAQuestion(image_id * 1000 + k, text, answer, image_id, split))
    return questions, image_paths


def store_image_paths(splits: Sequence[str] = EASY_VQA_SPLITS) -> dict[str, str]:
    """`{store_image_id(split, image_id): path}` of every image of the splits, in split then id order.

    The input of `processing.shape_detector.detect_to_store` for a region store of easy-VQA.
    """
    return {
        store_image_id(split, image_id): path
        for split in splits
        for image_id, path in load_easy_vqa(split)[1].items()
    }


def question_type(question: str) -> str:
    """The VQA-style question type of an easy-VQA question: its words before the first colour or shape name.

    VQA v2 types a question by its leading words ("what color is the", "is there a"); here the leading words
    are those before the concept, or the whole question (without `?`) when it names none. easy-VQA's 24
    templates give 14 types, e.g. `"what color is the"`, `"is there not a"`, `"what shape is present"`.
    """
    text = question.strip().rstrip("?").strip()
    match = _CONCEPT_WORD.search(text)
    return text[: match.start()].strip() if match else text


def vqa_v2_file_names(split_name: str) -> tuple[str, str]:
    """The VQA v2 file names of a split: `(v2_OpenEnded_mscoco_<split>_questions.json,
    v2_mscoco_<split>_annotations.json)`."""
    return (f"v2_OpenEnded_mscoco_{split_name}_questions.json", f"v2_mscoco_{split_name}_annotations.json")


def _atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to a temporary file beside `path`, flushed to disk, then renames it to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp_name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def export_vqa_v2(
    questions: Iterable[EasyVQAQuestion], output_dir: str | os.PathLike, split_name: str
) -> tuple[Path, Path]:
    """Writes questions in the standard VQA v2 layout, so that a VQA v2 reader reads them as real VQA.

    Files (in `output_dir`, created if needed; each written atomically, existing files replaced):

    - `v2_OpenEnded_mscoco_<split_name>_questions.json`: `{"info", "task_type": "Open-Ended", "data_type":
      "mscoco", "license", "data_subtype": split_name, "questions": [{"image_id", "question",
      "question_id"}, ...]}`;
    - `v2_mscoco_<split_name>_annotations.json`: `{"info", "license", "data_subtype", "data_type",
      "annotations": [{"question_id", "image_id", "multiple_choice_answer", "answers": [10 x {"answer",
      "answer_confidence": "yes", "answer_id": 1..10}], "question_type", "answer_type"}, ...]}`.

    `image_id` is easy-VQA's integer id (map it to a region-store key with [`store_image_id`]); the one answer is
    repeated as the 10 human answers, so its VQA soft score is 1.0; `answer_type` is `"yes/no"` for yes/no
    answers and `"other"` for colours and shapes; `question_type` is [`question_type`]. Questions keep their
    order.

    Args:
        questions: The questions of one split (their `question_id`s must be unique).
        output_dir: The folder of the files.
        split_name: The `<split>` of the file names and the `data_subtype`, e.g. `"easyvqa_train"`.

    Returns:
        The paths of the questions file and of the annotations file.

    Raises:
        ValueError: If `split_name` is empty or holds a path separator or whitespace, a question id repeats,
            or a question or answer is empty.
    """
    if not isinstance(split_name, str) or not split_name or re.search(r"[\s/\\]", split_name):
        raise ValueError(
            f"split_name must be a non-empty name without spaces or slashes, got {split_name!r}."
        )
    questions = list(questions)
    seen: set[int] = set()
    question_entries: list[dict[str, Any]] = []
    annotation_entries: list[dict[str, Any]] = []
    for question in questions:
        if question.question_id in seen:
            raise ValueError(
                f"Question id {question.question_id} repeats; export one split at a time (question ids are "
                "unique within a split)."
            )
        seen.add(question.question_id)
        if not question.question.strip() or not question.answer.strip():
            raise ValueError(
                f"Question {question.question_id} has an empty question or answer: {question!r}."
            )
        question_entries.append(
            {
                "image_id": question.image_id,
                "question": question.question,
                "question_id": question.question_id,
            }
        )
        annotation_entries.append(
            {
                "question_id": question.question_id,
                "image_id": question.image_id,
                "multiple_choice_answer": question.answer,
                "answers": [
                    {"answer": question.answer, "answer_confidence": "yes", "answer_id": answer_id}
                    for answer_id in range(1, _NUM_VQA_ANSWERS + 1)
                ],
                "question_type": question_type(question.question),
                "answer_type": "yes/no" if question.answer in ("yes", "no") else "other",
            }
        )
    info = {
        "description": "easy-VQA (https://github.com/vzhou842/easy-VQA, MIT) in the VQA v2 file layout; "
        "image_id is easy-VQA's image id within the split.",
        "version": "1.0",
    }
    license_ = {"name": "MIT License", "url": "https://opensource.org/licenses/MIT"}
    questions_name, annotations_name = vqa_v2_file_names(split_name)
    output_dir = Path(output_dir)
    questions_path, annotations_path = output_dir / questions_name, output_dir / annotations_name
    _atomic_write_text(
        questions_path,
        json.dumps(
            {
                "info": info,
                "task_type": "Open-Ended",
                "data_type": "mscoco",
                "license": license_,
                "data_subtype": split_name,
                "questions": question_entries,
            }
        ),
    )
    _atomic_write_text(
        annotations_path,
        json.dumps(
            {
                "info": info,
                "license": license_,
                "data_subtype": split_name,
                "data_type": "mscoco",
                "annotations": annotation_entries,
            }
        ),
    )
    return questions_path, annotations_path


def split_unpaired(train_image_ids: Iterable[int], seed: int = 0) -> tuple[list[int], list[int]]:
    """Cuts image ids into two disjoint halves for unpaired pre-training, reproducibly.

    The ids are shuffled with `numpy.random.default_rng(seed)` (after sorting, so the input order does not
    matter); the first `ceil(n / 2)` make the gallery half (their regions are the image corpus), the rest the
    text half (their questions are the text corpus). Together the halves are the input ids.

    Args:
        train_image_ids: Distinct image ids (e.g. the keys of `load_easy_vqa("train")[1]`).
        seed: Seed of the shuffle.

    Returns:
        `(gallery_ids, text_ids)`, each sorted.

    Raises:
        ValueError: If an id repeats.
    """
    ids = sorted(train_image_ids)
    if len(set(ids)) != len(ids):
        raise ValueError("train_image_ids must be distinct; an image id repeats.")
    order = np.random.default_rng(seed).permutation(len(ids))
    half = (len(ids) + 1) // 2
    gallery = sorted(ids[i] for i in order[:half])
    text = sorted(ids[i] for i in order[half:])
    return gallery, text


def write_text_corpus(
    questions: Iterable[EasyVQAQuestion | str], path: str | os.PathLike, *, include_answers: bool = False
) -> int:
    """Writes questions one per line, the plain-text input of `processing.text_corpus.build_text_corpus`.

    Read it with `build_text_corpus([("text", path)], output_dir, split=False, deduplicate=False)`: easy-VQA's
    questions repeat (107 distinct train texts), so the default de-duplication would keep only those. Whitespace
    is normalized (a question spans one line). The file is written atomically.

    Args:
        questions: [`EasyVQAQuestion`]s (e.g. those of the text half of [`split_unpaired`]) or question texts.
        path: The text file to write (replaced if it exists).
        include_answers: Append the answer after the question (`"what color is the circle? red"`), which gives
            the text corpus the colour-shape co-occurrences the questions alone lack. Needs
            `EasyVQAQuestion`s.

    Returns:
        The number of lines written.

    Raises:
        ValueError: If a question is empty, or `include_answers` is set and a question is a plain string.
    """
    lines = []
    for question in questions:
        if isinstance(question, EasyVQAQuestion):
            text = question.question
            if include_answers:
                text = f"{text} {question.answer}"
        elif isinstance(question, str):
            if include_answers:
                raise ValueError("include_answers=True needs EasyVQAQuestion objects, got a plain string.")
            text = question
        else:
            raise ValueError(f"Expected an EasyVQAQuestion or a str, got {type(question).__name__}.")
        text = " ".join(text.split())
        if not text:
            raise ValueError(f"Question {len(lines)} is empty.")
        lines.append(text)
    _atomic_write_text(Path(path), "".join(f"{line}\n" for line in lines))
    return len(lines)
