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
"""Readers of the downstream datasets (VQA v2, GQA, NLVR2, Karpathy-split captions) into `datasets.Dataset`s.

Each reader takes the files in their official layout and returns one row per example, with the image ids the
region store is looked up by (always strings: `RegionStore[int]` means a row, `RegionStore[str]` an image id).
The collators of `processing.downstream_collators` turn those rows into model batches.

| reader              | file(s)                                                | columns                                                 |
|---------------------|--------------------------------------------------------|---------------------------------------------------------|
| [`read_vqa_v2`]     | `v2_OpenEnded_mscoco_*_questions.json` (+ annotations) | `question_id`, `image_id`, `question` (+ `answers`, `multiple_choice_answer`, `answer_type`, `question_type`; + `labels`, `scores` with a vocabulary) |
| [`read_gqa`]        | `*_balanced_questions.json`                            | `question_id`, `image_id`, `question` (+ `answer`; + `label` with a vocabulary) |
| [`read_nlvr2`]      | `train.json` / `dev.json` / `test1.json` (JSON lines)  | `identifier`, `sentence`, `left_image_id`, `right_image_id` (+ `label`) |
| [`read_karpathy`]   | `dataset_coco.json` / `dataset_flickr30k.json`         | `image_id`, `caption`, `caption_index`, `image_index`   |

**VQA v2 answer vocabulary and soft scores** (Bottom-Up and Top-Down / Oscar preprocessing,
`compute_softscore.py`): [`build_vqa_answer_vocabulary`] normalizes every question's
`multiple_choice_answer` with the official normalization ([`normalize_vqa_answer`] of `processing.metrics`:
punctuation, number words to digits, articles dropped, contractions), counts each answer once per question and
keeps the answers of at least `min_count` (9) questions, which on VQA v2 train + val gives the 3,129 answers
of the paper. The vocabulary is sorted alphabetically, so it does not depend on the order of the files. The
training target of a question ([`read_vqa_v2`] with `label2id`) gives each vocabulary answer the soft score
[`vqa_soft_score`] of the number of its 10 annotator answers (normalized the same way) equal to it: 0, 0.3,
0.6, 0.9, 1.0 for 0, 1, 2, 3, >= 4. They are stored sparse: `labels` (answer ids, ascending) and `scores`
(float32, aligned), only answers with a nonzero score; answers outside the vocabulary get no target.

**GQA answers** are compared as the metric does (`strip().lower()`, [`normalize_gqa_answer`]); the vocabulary
([`build_gqa_answer_vocabulary`]) holds every answer of the given (train) files, sorted. An answer outside the
vocabulary (GQA's val/testdev have a few) gets `label = -100`, the index `CrossEntropyLoss` ignores, unless
`unknown_answer="error"`.

**Malformed input** (not JSON, a missing key, a wrong type, an NLVR2 label other than True/False, an unknown
answer with `unknown_answer="error"`, a question without an annotation) raises a `ValueError` naming the file
and the entry (index and id).

Trainer note: these rows carry columns the model does not take (`question`, `image_id`, ...) that the collators
need, so train with `TrainingArguments(remove_unused_columns=False)`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import datasets
from transformers.utils import logging

# `vqa_soft_score` (0, 0.3, 0.6, 0.9, 1.0 for 0, 1, 2, 3, >= 4 annotators) lives with the VQA metric, whose
# normalization it shares, and is re-exported here as part of the reader API.
from .metrics import normalize_gqa_answer, normalize_vqa_answer, vqa_answer_scores, vqa_soft_score


logger = logging.get_logger(__name__)

__all__ = [
    "KARPATHY_SPLITS",
    "build_gqa_answer_vocabulary",
    "build_vqa_answer_vocabulary",
    "nlvr2_image_ids",
    "read_gqa",
    "read_karpathy",
    "read_nlvr2",
    "read_vqa_v2",
    "vqa_soft_score",
    "vqa_targets",
]

PathLike = str | os.PathLike
KARPATHY_SPLITS = ("train", "restval", "val", "test")
_UNKNOWN_ANSWER_MODES = ("ignore", "error")


# --------------------------------------------------------------------------------------------------- helpers


def _load_json(path: PathLike, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); expected {what}.") from error


def _get(entry: Any, key: str, types: type | tuple[type, ...], where: str) -> Any:
    """`entry[key]`, checked to be of `types`; `where` names the file and entry in the error."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} is a {type(entry).__name__}; expected a JSON object.")
    if key not in entry:
        raise ValueError(f"{where} is missing the key {key!r} (it has {sorted(entry)[:12]}).")
    value = entry[key]
    if not isinstance(value, types) or isinstance(value, bool):
        names = " or ".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise ValueError(f"{where}: {key!r} is {value!r:.100} ({type(value).__name__}); expected {names}.")
    return value


def _get_list(content: Any, key: str, path: PathLike, what: str) -> list:
    if not isinstance(content, Mapping) or not isinstance(content.get(key), list):
        raise ValueError(f"{path} has no {key!r} list at the top level; expected {what}.")
    return content[key]


def _text(value: str, where: str, key: str) -> str:
    text = " ".join(value.split())
    if not text:
        raise ValueError(f"{where}: {key!r} is empty.")
    return text


def _as_paths(paths: PathLike | Iterable[PathLike]) -> list[PathLike]:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("Expected at least one file.")
    return paths


def _check_label2id(label2id: Mapping[str, int] | None) -> dict[str, int] | None:
    if label2id is None:
        return None
    label2id = dict(label2id)
    ids = sorted(label2id.values())
    if ids != list(range(len(ids))):
        raise ValueError(
            f"label2id must map its {len(ids)} answers to the ids 0..{len(ids) - 1} exactly once."
        )
    return label2id


def _check_unknown_answer(unknown_answer: str) -> None:
    if unknown_answer not in _UNKNOWN_ANSWER_MODES:
        raise ValueError(f"unknown_answer must be one of {_UNKNOWN_ANSWER_MODES}, got {unknown_answer!r}.")


# ----------------------------------------------------------------------------------------------------- VQA v2


def _vqa_annotations(path: PathLike) -> list[Mapping[str, Any]]:
    return _get_list(
        _load_json(path, "a VQA v2 annotations file"), "annotations", path, "a VQA v2 annotations file"
    )


def build_vqa_answer_vocabulary(
    annotations_paths: PathLike | Iterable[PathLike], min_count: int = 9
) -> dict[str, int]:
    """The VQA answer vocabulary of the Bottom-Up and Top-Down / Oscar preprocessing.

    Every question's `multiple_choice_answer` is normalized with [`normalize_vqa_answer`] and counted once per
    question id (over all the files); answers of at least `min_count` questions are kept.

    Args:
        annotations_paths: One VQA v2 annotations JSON (`{"annotations": [...]}`) or several (train + val, as
            for a test-dev submission).
        min_count: The minimum number of questions an answer must be the answer of (9 in BUTD / Oscar).

    Returns:
        `label2id`: the kept answers, sorted alphabetically, mapped to `0..num_labels-1`.

    Raises:
        ValueError: If a file is not a VQA v2 annotations file or an annotation lacks `question_id` or
            `multiple_choice_answer` (the message names the file and the annotation).
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a positive int, got {min_count!r}.")
    questions_of: dict[str, set] = {}
    for path in _as_paths(annotations_paths):
        for index, annotation in enumerate(_vqa_annotations(path)):
            where = f"{path}: annotations[{index}]"
            question_id = _get(annotation, "question_id", (int, str), where)
            answer = _get(annotation, "multiple_choice_answer", str, f"{where} (question_id {question_id})")
            questions_of.setdefault(normalize_vqa_answer(answer), set()).add(question_id)
    kept = sorted(answer for answer, questions in questions_of.items() if len(questions) >= min_count)
    return {answer: index for index, answer in enumerate(kept)}


def vqa_targets(answers: Iterable[str], label2id: Mapping[str, int]) -> tuple[list[int], list[float]]:
    """The sparse soft target of one question: the vocabulary answers among `answers` (the annotator answers,
    normalized with [`normalize_vqa_answer`]) with the soft score [`vqa_soft_score`] of their count.

    Returns:
        `(labels, scores)`: answer ids in ascending order and their scores (only nonzero scores).
    """
    scores = vqa_answer_scores(list(answers), normalize=True)
    pairs = sorted((label2id[answer], score) for answer, score in scores.items() if answer in label2id)
    return [label for label, _ in pairs], [score for _, score in pairs]


def read_vqa_v2(
    questions_path: PathLike,
    annotations_path: PathLike | None = None,
    label2id: Mapping[str, int] | None = None,
    image_id_format: str = "{image_id}",
) -> datasets.Dataset:
    """Reads a VQA v2 split: one row per question.

    Args:
        questions_path: The questions JSON, `{"questions": [{"image_id": int, "question": str,
            "question_id": int}, ...], "data_subtype": "train2014", ...}`.
        annotations_path: The annotations JSON of the same split, `{"annotations": [{"question_id", "image_id",
            "multiple_choice_answer", "answers": [{"answer": str, ...}, ...], "answer_type",
            "question_type"}, ...]}`; none for the test splits.
        label2id: The answer vocabulary ([`build_vqa_answer_vocabulary`]); with annotations, adds the soft
            targets `labels` / `scores`.
        image_id_format: How the region-store image id is written, a `str.format` template with the fields
            `image_id` (the int) and `data_subtype` (from the questions file, e.g. `"val2014"`). The default
            gives `"391895"`; for a store keyed by COCO file-name stems (LXMERT "obj36" TSVs, and the default of
            [`read_karpathy`]) pass `"COCO_{data_subtype}_{image_id:012d}"` (`"COCO_val2014_000000391895"`).

    Returns:
        A `datasets.Dataset` with `question_id` (int64), `image_id` (str), `question` (str) and, with
        annotations, `answers` (the annotator answers as given, `list[str]`, the references of the
        `vqa_accuracy` metric), `multiple_choice_answer`, `answer_type`, `question_type` (str, `""` when
        absent) and, with `label2id` too, `labels` (`list[int64]`, ascending answer ids) and `scores`
        (`list[float32]`, their soft scores).

    Raises:
        ValueError: If a file is not valid JSON or not in the VQA v2 layout, an entry lacks a key or has the
            wrong type, a question has no annotation, or an annotation's image id differs from its question's.
    """
    label2id = _check_label2id(label2id)
    what = "a VQA v2 questions file"
    content = _load_json(questions_path, what)
    questions = _get_list(content, "questions", questions_path, what)
    data_subtype = content.get("data_subtype", "")
    columns: dict[str, list] = {"question_id": [], "image_id": [], "question": []}
    image_ids: list[int] = []
    for index, entry in enumerate(questions):
        where = f"{questions_path}: questions[{index}]"
        question_id = _get(entry, "question_id", int, where)
        where = f"{where} (question_id {question_id})"
        image_id = _get(entry, "image_id", int, where)
        columns["question_id"].append(question_id)
        columns["image_id"].append(_format_image_id(image_id_format, image_id, data_subtype, where))
        columns["question"].append(_text(_get(entry, "question", str, where), where, "question"))
        image_ids.append(image_id)
    features = {
        "question_id": datasets.Value("int64"),
        "image_id": datasets.Value("string"),
        "question": datasets.Value("string"),
    }
    if annotations_path is not None:
        columns.update(_read_vqa_annotations(annotations_path, columns["question_id"], image_ids, label2id))
        features.update(
            {
                "answers": datasets.List(datasets.Value("string")),
                "multiple_choice_answer": datasets.Value("string"),
                "answer_type": datasets.Value("string"),
                "question_type": datasets.Value("string"),
            }
        )
        if label2id is not None:
            features["labels"] = datasets.List(datasets.Value("int64"))
            features["scores"] = datasets.List(datasets.Value("float32"))
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _format_image_id(template: str, image_id: int, data_subtype: str, where: str) -> str:
    try:
        return template.format(image_id=image_id, data_subtype=data_subtype)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"{where}: image_id_format {template!r} cannot be filled ({error!r}); its fields are {{image_id}} "
            "and {data_subtype}."
        ) from error


def _read_vqa_annotations(
    path: PathLike,
    question_ids: list[int],
    image_ids: list[int],
    label2id: dict[str, int] | None,
) -> dict[str, list]:
    by_question: dict[int, tuple[int, Mapping[str, Any]]] = {}
    for index, annotation in enumerate(_vqa_annotations(path)):
        question_id = _get(annotation, "question_id", int, f"{path}: annotations[{index}]")
        by_question[question_id] = (index, annotation)
    columns: dict[str, list] = {
        "answers": [],
        "multiple_choice_answer": [],
        "answer_type": [],
        "question_type": [],
    }
    if label2id is not None:
        columns["labels"], columns["scores"] = [], []
    for question_id, image_id in zip(question_ids, image_ids, strict=True):
        if question_id not in by_question:
            raise ValueError(f"{path} has no annotation for question_id {question_id} of the questions file.")
        index, annotation = by_question[question_id]
        where = f"{path}: annotations[{index}] (question_id {question_id})"
        if _get(annotation, "image_id", int, where) != image_id:
            raise ValueError(
                f"{where} is about image_id {annotation['image_id']}, but the questions file puts the question "
                f"on image_id {image_id}: the two files are not of the same split."
            )
        raw_answers = _get(annotation, "answers", list, where)
        if not raw_answers:
            raise ValueError(f"{where}: 'answers' is empty; expected the annotator answers (10 in VQA v2).")
        answers = [_get(item, "answer", str, f"{where}, answers[{k}]") for k, item in enumerate(raw_answers)]
        columns["answers"].append(answers)
        columns["multiple_choice_answer"].append(_get(annotation, "multiple_choice_answer", str, where))
        columns["answer_type"].append(str(annotation.get("answer_type", "")))
        columns["question_type"].append(str(annotation.get("question_type", "")))
        if label2id is not None:
            labels, scores = vqa_targets(answers, label2id)
            columns["labels"].append(labels)
            columns["scores"].append(scores)
    return columns


# -------------------------------------------------------------------------------------------------------- GQA


def _gqa_questions(path: PathLike) -> Mapping[str, Any]:
    content = _load_json(path, "a GQA questions file ({question_id: {...}})")
    if not isinstance(content, Mapping):
        raise ValueError(
            f"{path} holds a JSON {type(content).__name__}; expected a GQA questions file, an object "
            '{question_id: {"imageId", "question", "answer", ...}}.'
        )
    return content


def build_gqa_answer_vocabulary(paths: PathLike | Iterable[PathLike]) -> dict[str, int]:
    """The GQA answer vocabulary: every answer (`strip().lower()`) of the given files, usually the train split.

    Args:
        paths: One GQA balanced questions JSON or several.

    Returns:
        `label2id`, the answers sorted alphabetically and mapped to `0..num_labels-1`.

    Raises:
        ValueError: If a file is not a GQA questions file or a question has no string `answer`.
    """
    answers = set()
    for path in _as_paths(paths):
        for question_id, entry in _gqa_questions(path).items():
            answer = _get(entry, "answer", str, f"{path}: question {question_id!r}")
            answers.add(normalize_gqa_answer(answer))
    return {answer: index for index, answer in enumerate(sorted(answers))}


def read_gqa(
    path: PathLike,
    label2id: Mapping[str, int] | None = None,
    unknown_answer: str = "ignore",
) -> datasets.Dataset:
    """Reads a GQA questions file (`train_balanced_questions.json`, `testdev_balanced_questions.json`, ...).

    Args:
        path: `{question_id: {"imageId": str, "question": str, "answer": str, ...}}`. The test and challenge
            files have no `answer`.
        label2id: The answer vocabulary ([`build_gqa_answer_vocabulary`]); adds `label`.
        unknown_answer: What an answer outside `label2id` gets: `"ignore"` (`label = -100`, ignored by the
            loss; the number of such questions is logged) or `"error"` (a `ValueError`).

    Returns:
        A `datasets.Dataset` in file order with `question_id` (str), `image_id` (str, `imageId`), `question`
        (str), and when the file has answers `answer` (str, `strip().lower()`) and, with `label2id`, `label`
        (int64).

    Raises:
        ValueError: If the file is not valid JSON or not in the GQA layout, an entry lacks a key or has the wrong
            type, only some questions have an answer, or (with `unknown_answer="error"`) an answer is not in the
            vocabulary.
    """
    _check_unknown_answer(unknown_answer)
    label2id = _check_label2id(label2id)
    columns: dict[str, list] = {"question_id": [], "image_id": [], "question": [], "answer": []}
    for question_id, entry in _gqa_questions(path).items():
        where = f"{path}: question {question_id!r}"
        columns["question_id"].append(str(question_id))
        columns["image_id"].append(_get(entry, "imageId", str, where))
        columns["question"].append(_text(_get(entry, "question", str, where), where, "question"))
        answer = (
            _get(entry, "answer", str, where) if isinstance(entry, Mapping) and "answer" in entry else None
        )
        columns["answer"].append(None if answer is None else normalize_gqa_answer(answer))
    features = {
        "question_id": datasets.Value("string"),
        "image_id": datasets.Value("string"),
        "question": datasets.Value("string"),
    }
    answered = sum(answer is not None for answer in columns["answer"])
    if answered == 0:
        del columns["answer"]
    else:
        if answered != len(columns["answer"]):
            missing = columns["question_id"][columns["answer"].index(None)]
            raise ValueError(
                f"{path}: question {missing!r} has no 'answer' while {answered} other questions have one."
            )
        features["answer"] = datasets.Value("string")
        if label2id is not None:
            columns["label"] = _gqa_labels(path, columns, label2id, unknown_answer)
            features["label"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _gqa_labels(path: PathLike, columns: dict[str, list], label2id: dict[str, int], unknown_answer: str):
    labels = []
    for question_id, answer in zip(columns["question_id"], columns["answer"], strict=True):
        if answer not in label2id and unknown_answer == "error":
            raise ValueError(f"{path}: question {question_id!r} has the answer {answer!r}, not in label2id.")
        labels.append(label2id.get(answer, -100))
    unknown = labels.count(-100)
    if unknown:
        logger.warning(
            f"{path}: {unknown} of {len(labels)} questions have an answer outside the vocabulary (label -100)."
        )
    return labels


# ------------------------------------------------------------------------------------------------------ NLVR2


def nlvr2_image_ids(identifier: str) -> tuple[str, str]:
    """The left and right image ids of an NLVR2 example, named as the released images: the identifier without
    its last (sentence) field, then `-img0` / `-img1` (`"dev-850-0-0"` -> `"dev-850-0-img0"`,
    `"dev-850-0-img1"`).

    Raises:
        ValueError: If `identifier` is not `split-setid-pairid-sentenceid`.
    """
    parts = identifier.split("-") if isinstance(identifier, str) else []
    if len(parts) != 4 or not all(parts):
        raise ValueError(f"{identifier!r} is not an NLVR2 identifier (split-setid-pairid-sentenceid).")
    stem = "-".join(parts[:-1])
    return f"{stem}-img0", f"{stem}-img1"


def read_nlvr2(path: PathLike) -> datasets.Dataset:
    """Reads an NLVR2 split (JSON lines: `{"identifier": "dev-850-0-0", "sentence": str, "label": "True", ...}`).

    Args:
        path: `train.json`, `dev.json`, `test1.json` (one JSON object per line; blank lines are skipped). Keys
            other than `identifier`, `sentence` and `label` (`left_url`, `directory`, ...) are ignored.

    Returns:
        A `datasets.Dataset` in file order with `identifier`, `sentence`, `left_image_id`, `right_image_id`
        (str; see [`nlvr2_image_ids`]) and, when the file has labels, `label` (int64, 1 for "True", 0 for
        "False").

    Raises:
        ValueError: If a line is not JSON, lacks a key, has a label other than True/False (the official
            strings, any case, or a bool), only some lines have a label, or the identifier is malformed; the
            message names the file and the 1-based line.
    """
    columns: dict[str, list] = {
        "identifier": [],
        "sentence": [],
        "left_image_id": [],
        "right_image_id": [],
        "label": [],
    }
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {line_number}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{where} is not valid JSON ({error}); expected an NLVR2 example."
                ) from error
            identifier = _get(entry, "identifier", str, where)
            where = f"{where} (identifier {identifier!r})"
            try:
                left, right = nlvr2_image_ids(identifier)
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            columns["identifier"].append(identifier)
            columns["sentence"].append(_text(_get(entry, "sentence", str, where), where, "sentence"))
            columns["left_image_id"].append(left)
            columns["right_image_id"].append(right)
            columns["label"].append(_nlvr2_label(entry["label"], where) if "label" in entry else None)
    features = {name: datasets.Value("string") for name in columns if name != "label"}
    labelled = sum(label is not None for label in columns["label"])
    if labelled == 0:
        del columns["label"]
    elif labelled != len(columns["label"]):
        missing = columns["identifier"][columns["label"].index(None)]
        raise ValueError(
            f"{path}: example {missing!r} has no 'label' while {labelled} other examples have one."
        )
    else:
        features["label"] = datasets.Value("int64")
    return datasets.Dataset.from_dict(columns, features=datasets.Features(features))


def _nlvr2_label(label: Any, where: str) -> int:
    if isinstance(label, bool):
        return int(label)
    if isinstance(label, str) and label.strip().lower() in ("true", "false"):
        return int(label.strip().lower() == "true")
    raise ValueError(f'{where}: \'label\' is {label!r}; expected "True" or "False".')


# ---------------------------------------------------------------------------------------- Karpathy captions


def read_karpathy(
    path: PathLike,
    split: str,
    image_id_key: str = "filename",
    fold_restval: bool = True,
) -> datasets.Dataset:
    """Reads one split of a Karpathy captions file (`dataset_coco.json`, `dataset_flickr30k.json`): one row per
    caption.

    Args:
        path: `{"images": [{"filename": str, "cocoid": int, "imgid": int, "split": str, "sentences":
            [{"raw": str, ...}, ...]}, ...]}`.
        split: `"train"`, `"val"`, `"test"` or `"restval"`. With `fold_restval` (the standard 113K-image COCO
            training set), `"train"` also takes the `restval` images, in file order.
        image_id_key: Where the region-store image id comes from: `"filename"` (the file-name stem,
            `"COCO_val2014_000000391895"`; Flickr30K `"1000092795"`), `"cocoid"` or `"imgid"` (the int as a
            string, e.g. `"391895"`).
        fold_restval: Whether `"train"` includes the `restval` images.

    Returns:
        A `datasets.Dataset` with `image_id` (str), `caption` (str, the `raw` sentence with whitespace
        normalized), `caption_index` (int32, the caption's index among its image's sentences) and
        `image_index` (int32, the index of the image among the split's images, in file order: the
        `text_to_image` of the `retrieval_recall` metric).

    Raises:
        ValueError: If the file is not valid JSON or not in the Karpathy layout, `split` or `image_id_key` is
            unknown, an image lacks a key, or a sentence has no (non-empty) `raw`; the message names the file and
            the image.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"split must be one of {KARPATHY_SPLITS}, got {split!r}.")
    if image_id_key not in ("filename", "cocoid", "imgid"):
        raise ValueError(f"image_id_key must be 'filename', 'cocoid' or 'imgid', got {image_id_key!r}.")
    wanted = {split, "restval"} if (split == "train" and fold_restval) else {split}
    what = "a Karpathy split captions file"
    images = _get_list(_load_json(path, what), "images", path, what)
    columns: dict[str, list] = {"image_id": [], "caption": [], "caption_index": [], "image_index": []}
    image_index = 0
    seen: set[str] = set()
    for index, image in enumerate(images):
        where = f"{path}: images[{index}]"
        if _get(image, "split", str, where) not in wanted:
            continue
        if image_id_key == "filename":
            image_id = Path(_get(image, "filename", str, where)).stem
        else:
            image_id = str(_get(image, image_id_key, int, where))
        where = f"{where} ({image_id_key} {image_id!r})"
        if image_id in seen:
            raise ValueError(f"{where}: the image id {image_id!r} repeats in the split {split!r}.")
        seen.add(image_id)
        sentences = _get(image, "sentences", list, where)
        for caption_index, sentence in enumerate(sentences):
            raw = _get(sentence, "raw", str, f"{where}, sentences[{caption_index}]")
            columns["image_id"].append(image_id)
            columns["caption"].append(_text(raw, f"{where}, sentences[{caption_index}]", "raw"))
            columns["caption_index"].append(caption_index)
            columns["image_index"].append(image_index)
        image_index += 1
    features = datasets.Features(
        {
            "image_id": datasets.Value("string"),
            "caption": datasets.Value("string"),
            "caption_index": datasets.Value("int32"),
            "image_index": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_dict(columns, features=features)
