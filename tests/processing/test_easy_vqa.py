"""Tests of the easy-VQA reader and its VQA v2 export (`processing.easy_vqa`)."""

import json
import os

import pytest


easy_vqa = pytest.importorskip("easy_vqa")

from processing.easy_vqa import (  # noqa: E402
    COLORS,
    SHAPES,
    EasyVQAQuestion,
    export_vqa_v2,
    load_easy_vqa,
    question_type,
    split_unpaired,
    store_image_id,
    store_image_paths,
    vqa_v2_file_names,
    write_text_corpus,
)
from processing.text_corpus import build_text_corpus  # noqa: E402


@pytest.fixture(scope="module")
def test_split():
    return load_easy_vqa("test")


def test_load_matches_the_package(test_split):
    questions, image_paths = test_split
    texts, answers, image_ids = easy_vqa.get_test_questions()
    assert len(questions) == len(texts) == 9673 and len(image_paths) == 1000
    assert [q.question for q in questions] == texts
    assert [q.answer for q in questions] == answers
    assert [q.image_id for q in questions] == image_ids
    assert {q.split for q in questions} == {"test"}
    assert list(image_paths) == list(range(1000))
    assert all(os.path.isfile(path) for path in image_paths.values())
    assert len({q.question_id for q in questions}) == len(questions)
    assert all(q.question_id // 1000 == q.image_id for q in questions)
    assert set(answers) == set(easy_vqa.get_answers()) == {"yes", "no", *SHAPES, *COLORS}
    with pytest.raises(ValueError, match="Unknown easy-VQA split"):
        load_easy_vqa("val")


def test_store_image_ids():
    assert store_image_id("train", 12) == "train-12" and store_image_id("test", 3) == "test-3"
    for bad in (-1, "3", 1.5, True):
        with pytest.raises(ValueError, match="image_id"):
            store_image_id("train", bad)
    with pytest.raises(ValueError, match="split"):
        store_image_id("val", 3)
    paths = store_image_paths(["test"])
    assert len(paths) == 1000 and paths["test-7"].endswith(os.path.join("test", "images", "7.png"))


def test_question_types():
    assert question_type("what color is the triangle?") == "what color is the"
    assert question_type("what color is the shape?") == "what color is the shape"
    assert question_type("is there not a red shape in the image?") == "is there not a"
    assert question_type("what is the blue shape?") == "what is the"


def test_export_vqa_v2_round_trip(test_split, tmp_path):
    questions = test_split[0][:40]
    questions_path, annotations_path = export_vqa_v2(questions, tmp_path / "vqa", "easyvqa_test")
    assert (questions_path.name, annotations_path.name) == vqa_v2_file_names("easyvqa_test")
    assert questions_path.name == "v2_OpenEnded_mscoco_easyvqa_test_questions.json"
    assert annotations_path.name == "v2_mscoco_easyvqa_test_annotations.json"
    assert sorted(os.listdir(tmp_path / "vqa")) == sorted([questions_path.name, annotations_path.name])

    question_file = json.loads(questions_path.read_text())
    assert question_file["task_type"] == "Open-Ended" and question_file["data_subtype"] == "easyvqa_test"
    assert question_file["questions"] == [
        {"image_id": q.image_id, "question": q.question, "question_id": q.question_id} for q in questions
    ]
    annotations = json.loads(annotations_path.read_text())["annotations"]
    assert len(annotations) == len(questions)
    for question, annotation in zip(questions, annotations, strict=True):
        assert set(annotation) == {
            "question_id",
            "image_id",
            "multiple_choice_answer",
            "answers",
            "question_type",
            "answer_type",
        }
        assert (
            annotation["question_id"] == question.question_id and annotation["image_id"] == question.image_id
        )
        assert annotation["multiple_choice_answer"] == question.answer
        assert annotation["answers"] == [
            {"answer": question.answer, "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)
        ]
        assert annotation["question_type"] == question_type(question.question)
        assert annotation["answer_type"] == ("yes/no" if question.answer in ("yes", "no") else "other")
        assert isinstance(annotation["image_id"], int) and isinstance(annotation["question_id"], int)


def test_export_errors(tmp_path):
    question = EasyVQAQuestion(5, "what color is the shape?", "red", 0, "test")
    with pytest.raises(ValueError, match="repeats"):
        export_vqa_v2([question, question], tmp_path, "x")
    with pytest.raises(ValueError, match="split_name"):
        export_vqa_v2([question], tmp_path, "a/b")
    assert os.listdir(tmp_path) == []


def test_split_unpaired():
    ids = list(range(4001))
    gallery, text = split_unpaired(ids, seed=3)
    assert len(gallery) == 2001 and len(text) == 2000
    assert not set(gallery) & set(text) and sorted(gallery + text) == ids
    assert split_unpaired(reversed(ids), seed=3) == (gallery, text)
    assert split_unpaired(ids, seed=4) != (gallery, text)
    with pytest.raises(ValueError, match="distinct"):
        split_unpaired([1, 1, 2])


def test_text_corpus_round_trip(test_split, tmp_path):
    questions = test_split[0][:30]
    path = tmp_path / "text.txt"
    assert write_text_corpus(questions, path) == 30
    assert path.read_text().splitlines() == [q.question for q in questions]
    corpus = build_text_corpus([("text", str(path))], tmp_path / "corpus", split=False, deduplicate=False)
    assert corpus["text"] == [q.question for q in questions]

    write_text_corpus(questions[:2], path, include_answers=True)
    assert path.read_text().splitlines() == [f"{q.question} {q.answer}" for q in questions[:2]]
    with pytest.raises(ValueError, match="empty"):
        write_text_corpus(["ok?", "  "], path)
    with pytest.raises(ValueError, match="include_answers"):
        write_text_corpus(["ok?"], path, include_answers=True)
    assert sorted(os.listdir(tmp_path)) == ["corpus", "text.txt"]
