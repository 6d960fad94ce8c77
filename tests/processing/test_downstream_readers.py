"""Tests of the downstream dataset readers (`processing.downstream_readers`) on small files in the official
layouts (VQA v2, GQA balanced questions, NLVR2 JSON lines, Karpathy split captions)."""

import json

import numpy as np
import pytest

from processing import metrics
from processing.downstream_readers import (
    build_gqa_answer_vocabulary,
    build_vqa_answer_vocabulary,
    nlvr2_image_ids,
    read_gqa,
    read_karpathy,
    read_nlvr2,
    read_vqa_v2,
    vqa_soft_score,
    vqa_targets,
)


# ------------------------------------------------------------------------------------------------------ VQA v2


def _write_vqa(tmp_path, multiple_choice, answers=None, name="train", data_subtype="train2014"):
    """Writes a questions and an annotations file: question k (id 1000 + k, image 10 + k % 3) has the
    multiple-choice answer `multiple_choice[k]` and the 10 annotator answers `answers[k]` (by default the
    multiple-choice answer 10 times)."""
    questions, annotations = [], []
    for k, answer in enumerate(multiple_choice):
        question_id, image_id = 1000 + k, 10 + k % 3
        questions.append({"image_id": image_id, "question": f"What is {k}?", "question_id": question_id})
        given = answers[k] if answers is not None and answers[k] is not None else [answer] * 10
        annotations.append(
            {
                "question_id": question_id,
                "image_id": image_id,
                "question_type": "what is",
                "answer_type": "other",
                "multiple_choice_answer": answer,
                "answers": [
                    {"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(given)
                ],
            }
        )
    questions_path = tmp_path / f"v2_OpenEnded_mscoco_{name}_questions.json"
    annotations_path = tmp_path / f"v2_mscoco_{name}_annotations.json"
    questions_path.write_text(
        json.dumps({"task_type": "Open-Ended", "data_subtype": data_subtype, "questions": questions})
    )
    annotations_path.write_text(json.dumps({"data_subtype": data_subtype, "annotations": annotations}))
    return questions_path, annotations_path


def test_vqa_soft_score_table():
    assert [vqa_soft_score(count) for count in range(12)] == [0.0, 0.3, 0.6, 0.9] + [1.0] * 8
    assert vqa_soft_score is metrics.vqa_soft_score  # one definition, shared with the metric
    with pytest.raises(ValueError):
        vqa_soft_score(-1)


def test_vqa_vocabulary_min_count_normalization_and_order(tmp_path):
    mc = (
        ["dog"] * 5 + ["a dog"] * 4  # 9 questions once normalized ("a dog" -> "dog"): kept
        + ["Two"] * 5 + ["2"] * 4  # 9: "two" -> "2": kept
        + ["cat"] * 8  # 8: dropped
        + ["Yes."] * 9  # "yes": kept
        + ["zebra"] * 10
    )  # fmt: skip
    _, annotations = _write_vqa(tmp_path, mc)
    label2id = build_vqa_answer_vocabulary(annotations)
    assert label2id == {"2": 0, "dog": 1, "yes": 2, "zebra": 3}  # sorted, cat dropped
    assert build_vqa_answer_vocabulary(annotations, min_count=8) == {
        "2": 0,
        "cat": 1,
        "dog": 2,
        "yes": 3,
        "zebra": 4,
    }
    # Counted once per question: the same file twice changes nothing.
    assert build_vqa_answer_vocabulary([annotations, annotations]) == label2id
    # ... but another split's questions add up: 8 + 1 cat questions.
    _, val = _write_vqa(tmp_path, ["cat"], name="val", data_subtype="val2014")
    val_content = json.loads(val.read_text())
    val_content["annotations"][0]["question_id"] = 99999
    val.write_text(json.dumps(val_content))
    assert "cat" in build_vqa_answer_vocabulary([annotations, val])


def test_read_vqa_v2_soft_targets(tmp_path):
    mc = ["2", "dog", "yes"] * 9
    answers = [None] * len(mc)
    answers[0] = ["Two"] * 3 + ["2"] + ["dog"] * 2 + ["a dog"] + ["cat"] * 3  # 2: 4, dog: 3, cat: 3 (unknown)
    answers[1] = ["dog", "yes", "no"] + ["blue"] * 7  # dog: 1, yes: 1
    questions, annotations = _write_vqa(tmp_path, mc, answers)
    label2id = build_vqa_answer_vocabulary(annotations)
    assert label2id == {"2": 0, "dog": 1, "yes": 2}
    dataset = read_vqa_v2(questions, annotations, label2id)
    assert len(dataset) == len(mc)
    assert dataset.features["image_id"].dtype == "string"
    assert dataset.features["scores"].feature.dtype == "float32"
    row = dataset[0]
    assert row["question_id"] == 1000 and row["image_id"] == "10" and row["question"] == "What is 0?"
    assert row["labels"] == [0, 1]
    np.testing.assert_array_equal(np.float32(row["scores"]), np.float32([1.0, 0.9]))
    assert row["answers"] == answers[0]  # as given: the metric's references
    assert row["multiple_choice_answer"] == "2" and row["answer_type"] == "other"
    assert dataset[1]["labels"] == [1, 2]
    np.testing.assert_array_equal(np.float32(dataset[1]["scores"]), np.float32([0.3, 0.3]))
    assert dataset[2]["labels"] == [2] and dataset[2]["scores"] == [1.0]
    assert vqa_targets(["2", "two", "Two", "dog"], label2id) == ([0, 1], [0.9, 0.3])

    # Without a vocabulary: answers but no targets; the stem image ids of COCO files on request.
    plain = read_vqa_v2(questions, annotations, image_id_format="COCO_{data_subtype}_{image_id:012d}")
    assert "labels" not in plain.column_names and plain[0]["image_id"] == "COCO_train2014_000000000010"


def test_read_vqa_v2_test_split_has_no_answers(tmp_path):
    questions, _ = _write_vqa(tmp_path, ["yes", "no"], name="test2015", data_subtype="test2015")
    dataset = read_vqa_v2(questions)
    assert dataset.column_names == ["question_id", "image_id", "question"]
    assert dataset["image_id"] == ["10", "11"]


def test_read_vqa_v2_malformed(tmp_path):
    questions, annotations = _write_vqa(tmp_path, ["yes", "no"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"questions": [')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        read_vqa_v2(bad)
    bad.write_text(json.dumps({"questions": [{"image_id": 1, "question_id": 7}]}))
    with pytest.raises(
        ValueError, match=r"bad\.json: questions\[0\] \(question_id 7\) is missing the key 'question'"
    ):
        read_vqa_v2(bad)
    bad.write_text(json.dumps({"annotations": [{"question_id": 1}]}))
    with pytest.raises(
        ValueError, match=r"bad\.json: annotations\[0\] \(question_id 1\) is missing the key "
    ):
        build_vqa_answer_vocabulary(bad)
    with pytest.raises(ValueError, match=r"bad\.json has no 'questions' list"):
        read_vqa_v2(bad)
    # A question without an annotation; an annotation of another image; an answer that is not a string.
    content = json.loads(annotations.read_text())
    content["annotations"] = content["annotations"][:1]
    bad.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"bad\.json has no annotation for question_id 1001"):
        read_vqa_v2(questions, bad)
    content = json.loads(annotations.read_text())
    content["annotations"][1]["image_id"] = 12345
    bad.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"annotations\[1\] \(question_id 1001\) is about image_id 12345"):
        read_vqa_v2(questions, bad)
    content = json.loads(annotations.read_text())
    content["annotations"][1]["answers"][3]["answer"] = 3
    bad.write_text(json.dumps(content))
    with pytest.raises(
        ValueError, match=r"annotations\[1\] \(question_id 1001\), answers\[3\]: 'answer' is 3"
    ):
        read_vqa_v2(questions, bad)
    with pytest.raises(ValueError, match="label2id must map"):
        read_vqa_v2(questions, annotations, {"yes": 0, "no": 2})


# --------------------------------------------------------------------------------------------------------- GQA


def _write_gqa(path, entries):
    path.write_text(json.dumps(entries))
    return path


def _gqa_entry(image_id, question, answer=None):
    entry = {"imageId": image_id, "question": question, "types": {"structural": "query"}, "isBalanced": True}
    if answer is not None:
        entry["answer"] = answer
        entry["fullAnswer"] = f"It is {answer}."
    return entry


def test_gqa_vocabulary_and_labels(tmp_path, caplog):
    train = _write_gqa(
        tmp_path / "train_balanced_questions.json",
        {
            "02930152": _gqa_entry("2354786", "Is the sky dark?", "yes"),
            "07333408": _gqa_entry("2375429", "What is on the white wall?", "pipe"),
            "07333409": _gqa_entry("2375429", "Is it left or right?", "Left "),
        },
    )
    label2id = build_gqa_answer_vocabulary(train)
    assert label2id == {"left": 0, "pipe": 1, "yes": 2}
    dataset = read_gqa(train, label2id)
    assert dataset.column_names == ["question_id", "image_id", "question", "answer", "label"]
    assert dataset["question_id"] == ["02930152", "07333408", "07333409"]  # strings, leading zeros kept
    assert dataset["image_id"] == ["2354786", "2375429", "2375429"]
    assert dataset["answer"] == ["yes", "pipe", "left"] and dataset["label"] == [2, 1, 0]

    testdev = _write_gqa(
        tmp_path / "testdev_balanced_questions.json",
        {
            "201307251": _gqa_entry("n161313", "Is it a cat?", "no"),
            "201640614": _gqa_entry("n5", "Q?", "yes"),
        },
    )
    assert read_gqa(testdev, label2id)["label"] == [-100, 2]  # outside the train vocabulary: ignored
    with pytest.raises(
        ValueError, match=r"testdev_balanced_questions\.json: question '201307251' has the answer 'no'"
    ):
        read_gqa(testdev, label2id, unknown_answer="error")

    test = _write_gqa(tmp_path / "test_balanced_questions.json", {"a1": _gqa_entry("n1", "What?")})
    assert read_gqa(test, label2id).column_names == ["question_id", "image_id", "question"]


def test_gqa_malformed(tmp_path):
    bad = tmp_path / "val_balanced_questions.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"val_balanced_questions\.json holds a JSON list"):
        read_gqa(bad)
    _write_gqa(bad, {"q1": {"question": "Is it?", "answer": "yes"}})
    with pytest.raises(
        ValueError, match=r"val_balanced_questions\.json: question 'q1' is missing the key 'imageId'"
    ):
        read_gqa(bad)
    _write_gqa(bad, {"q1": _gqa_entry("1", "Is it?", "yes"), "q2": _gqa_entry("1", "Is it?")})
    with pytest.raises(ValueError, match=r"question 'q2' has no 'answer'"):
        read_gqa(bad)
    _write_gqa(bad, {"q1": {"imageId": "1", "question": "Is it?", "answer": 1}})
    with pytest.raises(ValueError, match=r"question 'q1': 'answer' is 1"):
        build_gqa_answer_vocabulary(bad)


# ------------------------------------------------------------------------------------------------------- NLVR2


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_nlvr2_image_ids_and_labels(tmp_path):
    assert nlvr2_image_ids("dev-850-0-0") == ("dev-850-0-img0", "dev-850-0-img1")
    assert nlvr2_image_ids("test1-0-1-3") == ("test1-0-1-img0", "test1-0-1-img1")
    path = _write_jsonl(
        tmp_path / "dev.json",
        [
            {"identifier": "dev-850-0-0", "sentence": "One image shows two dogs.", "label": "True",
             "left_url": "http://example.invalid/l.jpg", "right_url": "http://example.invalid/r.jpg",
             "writer": "1", "synset": "dog", "query": "dogs"},
            {"identifier": "dev-850-3-0", "sentence": "One image shows two dogs.", "label": "False"},
            {"identifier": "dev-12-1-2", "sentence": "  There are   three birds. ", "label": "false"},
        ],
    )  # fmt: skip
    with open(path, "a") as file:
        file.write("\n")  # a trailing blank line is skipped
    dataset = read_nlvr2(path)
    assert dataset.column_names == ["identifier", "sentence", "left_image_id", "right_image_id", "label"]
    assert dataset["left_image_id"] == ["dev-850-0-img0", "dev-850-3-img0", "dev-12-1-img0"]
    assert dataset["right_image_id"] == ["dev-850-0-img1", "dev-850-3-img1", "dev-12-1-img1"]
    assert dataset["label"] == [1, 0, 0]
    assert dataset["sentence"][2] == "There are three birds."
    assert dataset.features["label"].dtype == "int64"

    unlabelled = _write_jsonl(tmp_path / "test2.json", [{"identifier": "test2-1-0-0", "sentence": "A dog."}])
    assert "label" not in read_nlvr2(unlabelled).column_names


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"identifier": "dev-1-0-0", "sentence": "A dog.", "label": "Maybe"}', r"line 2 .*'label' is 'Maybe'"),
        ('{"identifier": "dev-1-0-0", "sentence": "A dog."', r"line 2 is not valid JSON"),
        ('{"identifier": "dev-1-0-0", "label": "True"}', r"line 2 \(identifier 'dev-1-0-0'\) is missing the key 'sentence'"),
        ('{"identifier": "dev-1-0", "sentence": "A dog.", "label": "True"}', r"line 2 .*not an NLVR2 identifier"),
        ('{"identifier": "dev-1-0-1", "sentence": "A dog."}', r"example 'dev-1-0-1' has no 'label'"),
    ],
)  # fmt: skip
def test_nlvr2_malformed(tmp_path, line, message):
    path = tmp_path / "train.json"
    path.write_text(
        json.dumps({"identifier": "train-1-0-0", "sentence": "Two cats.", "label": "True"})
        + "\n"
        + line
        + "\n"
    )
    with pytest.raises(ValueError, match=r"train\.json" + (", " if "line" in message else ".*") + message):
        read_nlvr2(path)


# ------------------------------------------------------------------------------------------------- Karpathy


def _karpathy_image(index, split, captions, filename=None):
    filename = filename or f"COCO_val2014_{index:012d}.jpg"
    return {
        "filepath": "val2014",
        "filename": filename,
        "imgid": index,
        "cocoid": 100 + index,
        "split": split,
        "sentids": list(range(len(captions))),
        "sentences": [
            {"tokens": c.lower().split(), "raw": c, "imgid": index, "sentid": k}
            for k, c in enumerate(captions)
        ],
    }


@pytest.fixture
def karpathy_file(tmp_path):
    images = [
        _karpathy_image(0, "train", ["A dog runs.", "A brown dog."]),
        _karpathy_image(1, "val", ["A cat sleeps."]),
        _karpathy_image(2, "restval", ["Two boats.", "Boats on water. ", "A harbour."]),
        _karpathy_image(3, "test", ["A horse.", "A horse in a field."]),
        _karpathy_image(4, "train", ["A car."]),
    ]
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def test_karpathy_restval_folds_into_train(karpathy_file):
    train = read_karpathy(karpathy_file, "train")
    assert train["image_id"] == ["COCO_val2014_000000000000"] * 2 + ["COCO_val2014_000000000002"] * 3 + [
        "COCO_val2014_000000000004"
    ]
    assert train["caption_index"] == [0, 1, 0, 1, 2, 0]
    assert train["image_index"] == [0, 0, 1, 1, 1, 2]
    assert train["caption"][3] == "Boats on water."
    assert len(read_karpathy(karpathy_file, "train", fold_restval=False)) == 3
    assert read_karpathy(karpathy_file, "restval")["image_index"] == [0, 0, 0]
    test = read_karpathy(karpathy_file, "test", image_id_key="cocoid")
    assert test["image_id"] == ["103", "103"] and test["caption"] == ["A horse.", "A horse in a field."]
    assert read_karpathy(karpathy_file, "val", image_id_key="imgid")["image_id"] == ["1"]
    assert test.features["caption_index"].dtype == "int32"


def test_karpathy_malformed(tmp_path, karpathy_file):
    with pytest.raises(ValueError, match="split must be one of"):
        read_karpathy(karpathy_file, "dev")
    content = json.loads(karpathy_file.read_text())
    del content["images"][3]["sentences"][1]["raw"]
    bad = tmp_path / "dataset_flickr30k.json"
    bad.write_text(json.dumps(content))
    with pytest.raises(
        ValueError,
        match=r"dataset_flickr30k\.json: images\[3\] \(filename 'COCO_val2014_000000000003'\), sentences\[1\] is missing the key 'raw'",
    ):
        read_karpathy(bad, "test")
    bad.write_text(json.dumps({"images": [{"split": "test", "filename": "a.jpg"}]}))
    with pytest.raises(ValueError, match=r"images\[0\] \(filename 'a'\) is missing the key 'sentences'"):
        read_karpathy(bad, "test")
    bad.write_text("not json")
    with pytest.raises(ValueError, match=r"dataset_flickr30k\.json is not valid JSON"):
        read_karpathy(bad, "test")
