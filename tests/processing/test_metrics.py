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
"""Tests of the downstream metrics: VQA accuracy (official normalization and leave-one-out), the VQA soft
scores, GQA accuracy, NLVR2 accuracy/consistency, retrieval recall; and offline `evaluate.load(path)`."""

import ast
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from processing import metrics
from processing.metrics import (
    METRIC_NAMES,
    gqa_accuracy,
    metric_path,
    nlvr2_metrics,
    nlvr2_sentence_id,
    normalize_vqa_answer,
    process_punctuation,
    retrieval_ranks,
    retrieval_recall,
    vqa_accuracy,
    vqa_answer_scores,
    vqa_question_accuracy,
    vqa_soft_score,
)


retrieval_module = importlib.import_module("processing.metrics.retrieval_recall.retrieval_recall")
vqa_module = importlib.import_module("processing.metrics.vqa_accuracy.vqa_accuracy")


def refs(**counts) -> list:
    """Ten (by default) annotator answers: refs(blue=3, red=7). Keys use `_` for a space."""
    out = []
    for answer, count in counts.items():
        out += [answer.replace("_", " ")] * count
    return out


def ten(answer: str) -> list:
    return [answer] * 10


# ----------------------------------------------------------------------------------------------------------
# VQA accuracy
# ----------------------------------------------------------------------------------------------------------

# (prediction, ground-truth answers, expected per-question accuracy, why). Worked by hand from vqaEval.py:
# the prediction is always normalized; the references only get processPunctuation, and only when they are
# not all identical. With k of 10 references matching, leave-one-out gives
#   k=1: (9 * 1/3 + 1 * 0) / 10 = 0.3;  k=2: (8 * 2/3 + 2 * 1/3) / 10 = 0.6;
#   k=3: (7 * 1 + 3 * 2/3) / 10 = 0.9;  k=4: (6 * 1 + 4 * 1) / 10 = 1.0.
VQA_CASES = [
    # unanimous, numbers and number words
    ("2", ten("2"), 1.0, "exact"),
    ("two", ten("2"), 1.0, "number word -> digit"),
    ("Two", ten("2"), 1.0, "case + number word"),
    ("ten", ten("10"), 1.0, "ten -> 10"),
    ("none", ten("0"), 1.0, "'none' is in manualMap -> 0"),
    ("zero", ten("0"), 1.0, "zero -> 0"),
    ("there are two dogs", ten("there are 2 dogs"), 1.0, "number word inside a phrase"),
    # references with number words are NOT digit-processed (punctuation only, when not unanimous)
    ("two", refs(two=7, **{"2": 3}), 0.9, "gt 'two' stays 'two'; prediction becomes '2' which 3 gave"),
    ("2", ten("two"), 0.0, "unanimous gt 'two' never processed"),
    # articles
    ("a dog", ten("dog"), 1.0, "article dropped from the prediction"),
    ("the dog", refs(dog=2, cat=8), 0.6, "article dropped, 2 matches"),
    ("dog", ten("a dog"), 0.0, "unanimous gt keeps its article"),
    ("an apple", refs(apple=1, orange=9), 0.3, "article dropped, 1 match"),
    # commas and periods in numbers
    ("1,000", ten("1000"), 1.0, "digit-comma-digit: punctuation removed"),
    ("1000", refs(**{"1,000": 3, "1000": 7}), 1.0, "non-unanimous gt '1,000' -> '1000': 10 matches"),
    ("1,000", ten("1,000"), 0.0, "unanimous gt '1,000' kept; prediction became '1000'"),
    ("2,3", ten("23"), 1.0, "the comma between digits is simply deleted"),
    ("1,000-2,000", ten("10002000"), 1.0, "a digit-comma-digit anywhere removes ALL punctuation"),
    ("3.5", ten("3.5"), 1.0, "period followed by a digit is kept"),
    ("3.5", refs(**{"3.5": 1, "35": 9}), 0.3, "3.5 is not 35"),
    # trailing period
    ("yes.", ten("yes"), 1.0, "trailing period stripped"),
    ("yes", ten("yes."), 0.0, "unanimous gt 'yes.' is not processed"),
    ("yes", refs(**{"yes.": 9, "yes": 1}), 1.0, "non-unanimous gt: 'yes.' -> 'yes', 10 matches"),
    ("yes" + "." * 32, ten("yes"), 1.0, "32 periods are removed"),
    ("yes" + "." * 33, ten("yes"), 0.0, "periodStrip.sub(..., re.UNICODE) passes count=32: one period stays"),
    # contractions
    ("dont", ten("don't"), 1.0, "dont -> don't"),
    ("whats", refs(**{"what's": 3, "x": 7}), 0.9, "whats -> what's, 3 matches"),
    ("isnt", refs(**{"isn't": 1, "is": 9}), 0.3, "isnt -> isn't, 1 match"),
    ("don't", refs(dont=4, no=6), 0.0, "gt contractions are not expanded; the apostrophe is kept"),
    ("Im", ten("i'm"), 0.0, "the table's key is 'Im' but matching happens after lower-casing"),
    # case, whitespace
    ("YES", ten("yes"), 1.0, "prediction lower-cased"),
    ("yes", ten("Yes"), 0.0, "gt is never lower-cased"),
    ("  yes  ", ten("yes"), 1.0, "prediction stripped"),
    ("red   and  blue", ten("red and blue"), 1.0, "inner whitespace collapsed"),
    ("red\tblue\n", ten("red blue"), 1.0, "tab/newline -> space"),
    # other punctuation
    ("t-shirt", ten("t shirt"), 1.0, "'-' without adjacent space -> space"),
    ("t-shirt", ten("tshirt"), 0.0, "... not deleted"),
    ("red, white", ten("red white"), 1.0, "', ' present -> ',' deleted"),
    ("red,white", ten("red white"), 1.0, "',' without adjacent space -> space"),
    ("cat?", ten("cat"), 1.0, "'?' -> space, then stripped by the split"),
    ("(2)", ten("2"), 1.0, "brackets -> spaces"),
    # partial agreement, 10 annotators
    ("blue", refs(red=10), 0.0, "k=0"),
    ("blue", refs(blue=1, red=9), 0.3, "k=1"),
    ("blue", refs(blue=2, red=8), 0.6, "k=2"),
    ("blue", refs(blue=3, red=7), 0.9, "k=3"),
    ("blue", refs(blue=4, red=6), 1.0, "k=4"),
    ("blue", refs(blue=5, red=5), 1.0, "k=5"),
    ("blue", refs(blue=9, red=1), 1.0, "k=9"),
    # other numbers of references: leave-one-out over however many there are
    ("x", ["x", "x", "y"], (1 / 3 + 1 / 3 + 2 / 3) / 3, "3 answers: leaving out an x leaves 1 match"),
    ("x", ["x"] * 4, 1.0, "4 identical answers: 3 others match"),
    ("x", ["x"], 0.0, "a single answer: nothing is left to match"),
]


@pytest.mark.parametrize("prediction,references,expected,why", VQA_CASES, ids=[c[3] for c in VQA_CASES])
def test_vqa_question_accuracy_table(prediction, references, expected, why):
    assert vqa_question_accuracy(prediction, references) == pytest.approx(expected, abs=1e-12), why


def test_vqa_table_is_large_enough():
    assert len(VQA_CASES) >= 30


def _official_transcription(prediction, answers):
    """vqaEval.py's per-question loop, transcribed independently of the module: answers are dicts with ids,
    the comma test runs inside the punctuation loop, the held-out answer is removed by dict inequality."""
    punct = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]  # fmt: skip
    comma_strip, period_strip = re.compile(r"(\d)(,)(\d)"), re.compile(r"(?!<=\d)(\.)(?!\d)")
    number = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5"}
    number.update({"six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"})

    def punctuation(in_text):
        out_text = in_text
        for p in punct:
            if (p + " " in in_text or " " + p in in_text) or (re.search(comma_strip, in_text) is not None):
                out_text = out_text.replace(p, "")
            else:
                out_text = out_text.replace(p, " ")
        return period_strip.sub("", out_text, count=32)

    def digit_article(in_text):
        words = [number.get(w, w) for w in in_text.lower().split()]
        words = [w for w in words if w not in ("a", "an", "the")]
        return " ".join(vqa_module.CONTRACTIONS.get(w, w) for w in words)

    res = digit_article(punctuation(prediction.replace("\n", " ").replace("\t", " ").strip()))
    gts = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(answers)]
    if len({g["answer"] for g in gts}) > 1:
        for g in gts:
            g["answer"] = punctuation(g["answer"])
    accs = []
    for held_out in gts:
        others = [g for g in gts if g != held_out]
        accs.append(min(1, float(len([g for g in others if g["answer"] == res])) / 3))
    return float(sum(accs)) / len(accs)


def test_vqa_matches_transcription_of_official_evaluator():
    pool = ["2", "two", "Two.", "1,000", "1000", "3.5", "yes", "yes.", "Yes", "a dog", "dog", "the dog",
            "dont", "don't", "t-shirt", "t shirt", "red, white", "red white", "none", "0", "what's", "whats",
            "x-ray (left)", "cat?", " yes ", "ten"]  # fmt: skip
    rng = np.random.default_rng(0)
    for _ in range(3000):
        answers = [pool[i] for i in rng.integers(0, len(pool), size=int(rng.integers(1, 11)))]
        if rng.random() < 0.2:
            answers = [answers[0]] * 10
        prediction = pool[int(rng.integers(0, len(pool)))]
        assert vqa_question_accuracy(prediction, answers) == _official_transcription(prediction, answers)


def test_vqa_full_reference_processing_option():
    # Not official: normalizes the references like predictions.
    assert vqa_question_accuracy("two", refs(two=7, **{"2": 3}), reference_processing="full") == 1.0
    assert vqa_question_accuracy("dog", ten("a dog"), reference_processing="full") == 1.0
    assert vqa_question_accuracy("yes", ten("Yes."), reference_processing="full") == 1.0
    with pytest.raises(ValueError, match="reference_processing"):
        vqa_question_accuracy("yes", ten("yes"), reference_processing="nope")


def test_vqa_normalization_functions():
    assert process_punctuation("red,white") == "red white"
    assert process_punctuation("red, white") == "red white"
    assert process_punctuation("red ,white") == "red white"
    assert process_punctuation("1,000.") == "1000"
    assert process_punctuation("a.b") == "ab"
    assert normalize_vqa_answer(" The Two Dogs! ") == "2 dogs"
    assert normalize_vqa_answer("whats that") == "what's that"


def test_vqa_dataset_accuracy_fraction_percent_and_types():
    predictions = ["two", "blue", "cat", "yes"]
    references = [ten("2"), refs(blue=1, red=9), ten("dog"), refs(yes=2, no=8)]
    types = ["number", "other", "other", "yes/no"]
    out = vqa_accuracy(predictions, references, answer_types=types, return_per_question=True)
    assert out["per_question"] == pytest.approx([1.0, 0.3, 0.0, 0.6])
    assert out["accuracy"] == pytest.approx(1.9 / 4)
    assert out["overall"] == 47.5  # round(100 * 1.9 / 4, 2)
    assert out["num_questions"] == 4
    assert out["per_answer_type"] == {"number": 100.0, "other": 15.0, "yes/no": 60.0}
    out = vqa_accuracy(["p", "q", "r"], [ten("p"), refs(q=1, s=9), ten("x")])
    assert out["overall"] == 43.33  # 100 * 1.3 / 3 = 43.333..., rounded to 2 decimals as the official code
    assert set(out) == {"accuracy", "overall", "num_questions"}
    with pytest.raises(ValueError):
        vqa_accuracy(["x"], [])
    with pytest.raises(TypeError):
        vqa_accuracy(["x"], ["x"])  # a string is not a list of answers


def test_vqa_soft_score_table():
    assert [vqa_soft_score(k) for k in range(12)] == [0.0, 0.3, 0.6, 0.9] + [1.0] * 8
    assert vqa_soft_score(np.int64(2)) == 0.6
    with pytest.raises(ValueError):
        vqa_soft_score(-1)
    with pytest.raises(TypeError):
        vqa_soft_score(1.5)
    # The table is the leave-one-out accuracy of an answer given by k of 10 annotators.
    for k in range(11):
        assert vqa_question_accuracy("x", ["x"] * k + ["y"] * (10 - k)) == pytest.approx(vqa_soft_score(k))
    assert vqa_answer_scores(["Two", "2", "2", "three", "a cat"]) == {"2": 0.9, "3": 0.3, "cat": 0.3}
    assert vqa_answer_scores(["Two", "2"], normalize=False) == {"Two": 0.3, "2": 0.3}


# ----------------------------------------------------------------------------------------------------------
# GQA
# ----------------------------------------------------------------------------------------------------------


def test_gqa_accuracy():
    out = gqa_accuracy(["Yes", " left ", "red", "a cat", "2"], ["yes", "left", "blue", "cat", "two"])
    assert out == {"accuracy": 0.4, "num_questions": 5}  # no article / number-word processing in GQA
    with pytest.raises(ValueError):
        gqa_accuracy(["a"], ["a", "b"])


# ----------------------------------------------------------------------------------------------------------
# NLVR2
# ----------------------------------------------------------------------------------------------------------

NLVR2_IDS = ["dev-1-0-0", "dev-1-1-0", "dev-1-2-0", "dev-1-0-1", "dev-1-1-1", "dev-2-0-0"]
NLVR2_REFS = ["True", "True", "False", "True", "False", "False"]
NLVR2_PREDS = [1, 1, 0, 0, 0, 0]  # only dev-1-0-1 is wrong


def test_nlvr2_sentence_id_blanks_the_image_pair_field():
    assert nlvr2_sentence_id("dev-850-0-0") == "dev-850--0"
    assert nlvr2_sentence_id("dev-850-3-0") == "dev-850--0"
    assert nlvr2_sentence_id("test1-850-3-1") == "test1-850--1"
    with pytest.raises(ValueError):
        nlvr2_sentence_id("dev-850")


def test_nlvr2_accuracy_and_consistency_by_hand():
    # Sentences (official grouping): dev-1--0 = {all 3 right}, dev-1--1 = {wrong, right}, dev-2--0 = {right}.
    out = nlvr2_metrics(NLVR2_PREDS, NLVR2_REFS, NLVR2_IDS)
    assert out == {"accuracy": 5 / 6, "consistency": 2 / 3, "num_examples": 6, "num_sentences": 3}
    # (Grouping by the identifier without its last field would have given 3/4: that is not the official.)
    # Label formats: strings of any case, bools, 0/1.
    preds = ["true", "TRUE", "False", False, "0", 0]
    assert nlvr2_metrics(preds, NLVR2_REFS, NLVR2_IDS) == out
    assert nlvr2_metrics(NLVR2_REFS, [1, 1, 0, 1, 0, 0], NLVR2_IDS)["consistency"] == 1.0
    with pytest.raises(ValueError, match="NLVR2 label"):
        nlvr2_metrics(["maybe"], ["True"], ["dev-1-0-0"])
    with pytest.raises(ValueError, match="NLVR2 label"):
        nlvr2_metrics([2], [1], ["dev-1-0-0"])


# ----------------------------------------------------------------------------------------------------------
# Retrieval
# ----------------------------------------------------------------------------------------------------------

# 3 images x 6 texts, 2 captions per image, with ties.
RETRIEVAL_SCORES = [
    [0.3, 0.5, 0.5, 0.3, 0.0, 0.2],
    [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
    [0.0, 0.0, 0.0, 0.7, 0.7, 0.1],
]
RETRIEVAL_T2I = [0, 0, 1, 1, 2, 2]


def test_retrieval_ranks_by_hand_with_ties():
    i2t, t2i = retrieval_ranks(RETRIEVAL_SCORES, RETRIEVAL_T2I)
    # image 0: t1 (0.5) is first (t2 ties but has a higher index) -> 0.
    # image 1: all tie, texts in index order: its t2, t3 sit at 2, 3 -> 2.
    # image 2: t3 and t4 tie at 0.7, t3 (not its own) first -> t4 at 1; t5 at 2 -> 1.
    assert i2t.tolist() == [0, 2, 1]
    # t0: [0.3, 0.3, 0.0], image 0 wins the tie -> 0.  t1: [0.5, 0.3, 0.0] -> 0.
    # t2: [0.5, 0.3, 0.0] -> image 1 at 1.            t3: [0.3, 0.3, 0.7] -> image 2, then image 0 (tie) -> 2.
    # t4: [0.0, 0.3, 0.7] -> 0.                       t5: [0.2, 0.3, 0.1] -> 2.
    assert t2i.tolist() == [0, 0, 1, 2, 0, 2]
    out = retrieval_recall(RETRIEVAL_SCORES, RETRIEVAL_T2I, ks=(1, 2, 3))
    expected = {
        "i2t_r1": 100 / 3, "i2t_r2": 200 / 3, "i2t_r3": 100.0,
        "t2i_r1": 50.0, "t2i_r2": 400 / 6, "t2i_r3": 100.0,
    }  # fmt: skip
    for key, value in expected.items():
        assert out[key] == pytest.approx(value), key
    assert out["rsum"] == pytest.approx(100 / 3 + 200 / 3 + 100 + 50 + 400 / 6 + 100)
    assert out["i2t_r_mean"] == pytest.approx(200 / 3)
    assert out["t2i_r_mean"] == pytest.approx((50 + 400 / 6 + 100) / 3)
    assert out["r_mean"] == pytest.approx(out["rsum"] / 6)


def test_retrieval_five_captions_per_image():
    # Image 0's captions are t0..t4, image 1's t5..t9.
    scores = np.array(
        [
            [0.1, 0.1, 0.1, 0.1, 0.9] + [0.5] * 5,  # only t4 is on top: ANY caption counts -> rank 0
            [0.2] * 10,  # all tie: its captions come after t0..t4 -> best rank 5
        ]
    )
    t2i_map = [0] * 5 + [1] * 5
    i2t, t2i = retrieval_ranks(scores, t2i_map)
    assert i2t.tolist() == [0, 5]
    # Columns: t0..t3 -> [0.1, 0.2] rank 1; t4 -> [0.9, 0.2] rank 0; t5..t9 -> [0.5, 0.2] rank 1.
    assert t2i.tolist() == [1, 1, 1, 1, 0, 1, 1, 1, 1, 1]
    out = retrieval_recall(scores, t2i_map)
    assert out["i2t_r1"] == 50.0 and out["i2t_r5"] == 50.0 and out["i2t_r10"] == 100.0  # rank 5 is not < 5
    assert out["t2i_r1"] == 10.0 and out["t2i_r5"] == 100.0 and out["t2i_r10"] == 100.0
    assert out["rsum"] == pytest.approx(50 + 50 + 100 + 10 + 100 + 100)


def _ranks_by_stable_sort(scores, text_to_image):
    scores = np.asarray(scores, dtype=np.float64)
    i2t = []
    for image, row in enumerate(scores):
        order = np.argsort(-row, kind="stable")
        positions = np.empty_like(order)
        positions[order] = np.arange(len(order))
        own = [t for t, i in enumerate(text_to_image) if i == image]
        i2t.append(min(positions[own]) if own else -1)
    t2i = []
    for text, image in enumerate(text_to_image):
        order = np.argsort(-scores[:, text], kind="stable")
        t2i.append(int(np.nonzero(order == image)[0][0]))
    return i2t, t2i


def test_retrieval_matches_stable_sort_with_many_ties(monkeypatch):
    monkeypatch.setattr(retrieval_module, "_CHUNK_ELEMENTS", 7)  # exercise the chunking
    rng = np.random.default_rng(0)
    for _ in range(5):
        num_images = int(rng.integers(2, 9))
        num_texts = int(rng.integers(2, 30))
        scores = rng.integers(0, 3, size=(num_images, num_texts)).astype(np.float32)  # lots of ties
        text_to_image = rng.integers(0, num_images, size=num_texts)
        i2t, t2i = retrieval_ranks(scores, text_to_image)
        expected_i2t, expected_t2i = _ranks_by_stable_sort(scores, text_to_image)
        assert i2t.tolist() == expected_i2t and t2i.tolist() == expected_t2i


def test_retrieval_input_checks_and_captionless_images():
    # Image 2 has no caption: it is a distractor for t2i and not an i2t query.
    scores = [[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]
    out = retrieval_recall(scores, [0, 1], ks=(1, 2))
    assert out["i2t_r1"] == 100.0 and out["t2i_r1"] == 0.0 and out["t2i_r2"] == 100.0
    assert retrieval_ranks(scores, [0, 1])[0].tolist() == [0, 0, -1]
    with pytest.raises(ValueError, match="NaN"):
        retrieval_recall([[np.nan, 1.0]], [0, 0])
    with pytest.raises(ValueError, match="one image index per text"):
        retrieval_recall([[1.0, 1.0]], [0])
    with pytest.raises(ValueError, match="lie in"):
        retrieval_recall([[1.0, 1.0]], [0, 1])
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall([[1.0]], [0], ks=(0,))


# ----------------------------------------------------------------------------------------------------------
# Packaging: self-contained modules, `metric_path`, offline `evaluate.load(path)`
# ----------------------------------------------------------------------------------------------------------

ALLOWED_IMPORTS = {"evaluate", "datasets", "numpy"}


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_metric_modules_are_self_contained(name):
    path = os.path.join(metric_path(name), f"{name}.py")
    assert os.path.isfile(path)
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}.py has a relative import: evaluate copies only the module file"
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            top = module.split(".")[0]
            assert top in ALLOWED_IMPORTS or top in sys.stdlib_module_names, f"{name}.py imports {module}"


def test_metric_path_and_names():
    assert METRIC_NAMES == ("vqa_accuracy", "gqa_accuracy", "nlvr2", "retrieval_recall")
    for name in METRIC_NAMES:
        assert os.path.basename(metric_path(name)) == name
        assert os.path.dirname(metric_path(name)) == os.path.dirname(metrics.__file__)
    with pytest.raises(ValueError, match="unknown metric"):
        metric_path("bleu")


VQA_INPUT = {
    "predictions": [case[0] for case in VQA_CASES],
    "references": [case[1] for case in VQA_CASES],
}
GQA_INPUT = {"predictions": ["Yes", "left", "red"], "references": ["yes", "right", "red"]}
NLVR2_INPUT = {"predictions": NLVR2_PREDS, "references": NLVR2_REFS, "identifiers": NLVR2_IDS}
RETRIEVAL_INPUT = {"scores": RETRIEVAL_SCORES, "text_to_image": RETRIEVAL_T2I, "ks": [1, 2, 3]}

_OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import evaluate

    paths, inputs = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    results = {}
    for name, path in paths.items():
        module = evaluate.load(path)
        results[name] = module.compute(**inputs[name])
    # Streaming: add_batch in two halves, then compute.
    module = evaluate.load(paths["vqa_accuracy"])
    half = len(inputs["vqa_accuracy"]["predictions"]) // 2
    for part in (slice(None, half), slice(half, None)):
        module.add_batch(predictions=inputs["vqa_accuracy"]["predictions"][part],
                         references=inputs["vqa_accuracy"]["references"][part])
    results["vqa_accuracy_batched"] = module.compute()
    module = evaluate.load(paths["retrieval_recall"])
    for row in inputs["retrieval_recall"]["scores"]:
        module.add_batch(scores=[row])
    results["retrieval_recall_batched"] = module.compute(
        text_to_image=inputs["retrieval_recall"]["text_to_image"], ks=inputs["retrieval_recall"]["ks"])
    results["imported_processing"] = "processing" in sys.modules
    # And the package helper, from the source tree.
    from processing.metrics import load_metric
    results["load_metric"] = {name: load_metric(name).compute(**inputs[name]) for name in paths}
    print("RESULTS" + json.dumps(results))
    """
)


def test_metrics_load_offline_in_fresh_process(tmp_path):
    """`evaluate.load(folder)` with an empty HF_HOME and HF_HUB_OFFLINE=1: the module file is copied alone into
    the empty module cache and imported from there, so this also proves that each module is self-contained."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
    paths = {name: metric_path(name) for name in METRIC_NAMES}
    inputs = {
        "vqa_accuracy": VQA_INPUT,
        "gqa_accuracy": GQA_INPUT,
        "nlvr2": NLVR2_INPUT,
        "retrieval_recall": RETRIEVAL_INPUT,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, json.dumps(paths), json.dumps(inputs)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS")][-1]
    results = json.loads(line[len("RESULTS") :])

    expected = {
        "vqa_accuracy": vqa_accuracy(**VQA_INPUT),
        "gqa_accuracy": gqa_accuracy(**GQA_INPUT),
        "nlvr2": nlvr2_metrics(**NLVR2_INPUT),
        "retrieval_recall": retrieval_recall(**RETRIEVAL_INPUT),
    }
    for name, value in expected.items():
        assert results[name] == value, name
        assert results["load_metric"][name] == value, name
    assert results["vqa_accuracy_batched"] == expected["vqa_accuracy"]
    assert results["retrieval_recall_batched"] == expected["retrieval_recall"]
    assert results["imported_processing"] is False
    assert expected["vqa_accuracy"]["accuracy"] == pytest.approx(
        sum(case[2] for case in VQA_CASES) / len(VQA_CASES)
    )
    assert expected["nlvr2"]["consistency"] == pytest.approx(2 / 3)
    # The module cache was populated from scratch, with the module files only.
    cached = sorted(
        name
        for _, _, files in os.walk(tmp_path / "hf_home" / "modules" / "evaluate_modules")
        for name in files
        if name.endswith(".py") and name != "__init__.py"
    )
    assert cached == sorted(f"{name}.py" for name in METRIC_NAMES)
