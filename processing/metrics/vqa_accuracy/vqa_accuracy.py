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
"""VQA v2 accuracy, reproducing the official evaluator (`vqaEval.py` of GT-Vision-Lab/VQA).

This file is an `evaluate` metric module and is SELF-CONTAINED on purpose: `evaluate.load(folder)` copies
only this file into its module cache, so it imports nothing but `evaluate`, `datasets` and the standard
library. The plain functions below (`normalize_vqa_answer`, `vqa_question_accuracy`, `vqa_accuracy`,
`vqa_soft_score`, ...) are also importable from `processing.metrics`.

Behaviour of the official evaluator, reproduced exactly (quirks included):

- The predicted answer is always normalized: `\\n` and `\\t` become spaces, the string is stripped, then
  `processPunctuation` and `processDigitArticle` are applied.
- The ground-truth answers are passed through `processPunctuation` ONLY, and only when they are not all
  identical (`len(set(gtAnswers)) > 1`). They are never lower-cased, digit/article/contraction-processed or
  stripped: the released VQA annotations are already normalized, so the official code relies on it.
  Consequently a ground truth written `"two"` never matches anything (a prediction `"two"` becomes `"2"`),
  and a unanimous ground truth `"yes."` is compared as is (a prediction `"yes."` becomes `"yes"`: 0).
  `reference_processing="full"` (not official) normalizes every reference exactly like a prediction, for
  datasets whose answers are not pre-normalized.
- `processPunctuation`: for each character of the `punct` list, if it is followed or preceded by a space
  in the ORIGINAL text, or if the original text contains a digit-comma-digit (`(\\d)(,)(\\d)`), every
  occurrence is removed; otherwise every occurrence is replaced by a SPACE. (So `"1,000"` -> `"1000"`,
  `"red, white"` -> `"red white"`, `"t-shirt"` -> `"t shirt"`.) Periods are not in `punct`: the regex
  `(?!<=\\d)(\\.)(?!\\d)` (a typo of a look-behind in the original; it acts as "a period not followed by a
  digit") deletes them, so `"3.5"` keeps its period and `"yes."` loses it. The official call is
  `periodStrip.sub("", outText, re.UNICODE)`, which passes `re.UNICODE` (= 32) as the `count` argument:
  at most 32 periods are removed. Reproduced.
- `processDigitArticle`: lower-case, split on whitespace, map number words `none`/`zero`..`ten` to digits
  (`"none"` -> `"0"`), drop the articles `a`/`an`/`the`, then map contractions with the official table
  (`"dont"` -> `"don't"`, `"whats"` -> `"what's"`, ...; the table's capitalised keys such as `"Im"` can
  never match after lower-casing, as in the original), and join with single spaces.
- Per-question accuracy, leave-one-out over the ground-truth answers (10 in VQA v2; any number >= 1 is
  accepted): for each answer, count how many of the OTHER answers equal the prediction and score
  `min(1, matches / 3)`; average over the answers. With k matching answers out of 10 this gives
  0, 0.3, 0.6, 0.9, 1.0 for k = 0, 1, 2, 3, >= 4. (The official code removes the held-out answer by dict
  inequality; VQA answers carry distinct `answer_id`s, so that is removal by position, as done here.)
  With a SINGLE reference answer nothing is left after leaving it out, so every question scores 0: for
  single-answer datasets (e.g. easy-vqa) use exact match (`gqa_accuracy`) instead.
- Dataset accuracy: `overall = round(100 * sum / n, 2)` as the official `accuracy['overall']` (percent,
  2 decimals), and `accuracy = sum / n` (a fraction in [0, 1], unrounded).
"""

import re
from collections import Counter

import datasets
import evaluate


_CITATION = """\
@inproceedings{goyal2017making,
  title={Making the {V} in {VQA} Matter: Elevating the Role of Image Understanding in Visual Question Answering},
  author={Goyal, Yash and Khot, Tejas and Summers-Stay, Douglas and Batra, Dhruv and Parikh, Devi},
  booktitle={CVPR},
  year={2017}
}
"""

_DESCRIPTION = """\
VQA accuracy as computed by the official VQA v2 evaluator (vqaEval.py, GT-Vision-Lab/VQA): the prediction is
normalized (punctuation, number words, articles, contractions), the ground-truth answers are
punctuation-processed when they are not unanimous, and each question scores the leave-one-out average of
min(1, #matching other answers / 3).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one predicted answer per question.
    references (`list[list[str]]`): the ground-truth answers of each question (10 in VQA v2; any number >= 1,
        leave-one-out runs over however many there are).
    answer_types (`list[str]`, *optional*): the answer type of each question ("yes/no", "number", "other");
        adds `per_answer_type`.
    reference_processing (`str`, *optional*, defaults to `"official"`): `"official"` reproduces vqaEval.py
        (references punctuation-processed only when not unanimous); `"full"` normalizes every reference
        exactly like a prediction (not official).
    return_per_question (`bool`, *optional*, defaults to `False`): add `per_question`, the list of
        per-question accuracies (fractions).
Returns:
    accuracy (`float`): mean per-question accuracy, a fraction in [0, 1] (unrounded).
    overall (`float`): the official number, `round(100 * accuracy, 2)` in percent.
    num_questions (`int`): number of questions.
    per_answer_type (`dict[str, float]`): only with `answer_types`; percent, 2 decimals, as the official
        `accuracy['perAnswerType']`.
    per_question (`list[float]`): only with `return_per_question=True`.
Examples:
    >>> vqa = evaluate.load("processing/metrics/vqa_accuracy")
    >>> vqa.compute(predictions=["Two."], references=[["2"] * 2 + ["3"] * 8])
    {'accuracy': 0.6, 'overall': 60.0, 'num_questions': 1}
"""

# ----------------------------------------------------------------------------------------------------------
# Normalization tables, as in vqaEval.py.
# ----------------------------------------------------------------------------------------------------------

CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip

MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

ARTICLES = ("a", "an", "the")

PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")  # fmt: skip

COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
# vqaEval.py calls `periodStrip.sub("", outText, re.UNICODE)`: the flag lands in the `count` slot.
_PERIOD_STRIP_COUNT = int(re.UNICODE)

# Soft scores of the VQA training targets for 0, 1, 2, 3 annotators; 4 or more -> 1.0.
VQA_SOFT_SCORES = (0.0, 0.3, 0.6, 0.9)

REFERENCE_PROCESSING_MODES = ("official", "full")


def process_punctuation(text: str) -> str:
    """`processPunctuation` of vqaEval.py."""
    out = text
    has_digit_comma_digit = COMMA_STRIP.search(text) is not None  # the official code tests it per character
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or has_digit_comma_digit:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """`processDigitArticle` of vqaEval.py."""
    words = []
    for word in text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            words.append(word)
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(answer: str) -> str:
    """The full normalization vqaEval.py applies to a predicted answer."""
    answer = answer.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(answer))


def _process_references(references, reference_processing: str, cache=None):
    if reference_processing not in REFERENCE_PROCESSING_MODES:
        raise ValueError(
            f"reference_processing must be one of {REFERENCE_PROCESSING_MODES}, got {reference_processing!r}"
        )
    if reference_processing == "full":
        fn = normalize_vqa_answer
    elif len(set(references)) > 1:
        fn = process_punctuation
    else:
        return list(references)
    if cache is None:
        return [fn(ref) for ref in references]
    out = []
    for ref in references:
        key = (fn, ref)
        if key not in cache:
            cache[key] = fn(ref)
        out.append(cache[key])
    return out


def _leave_one_out_accuracy(normalized_prediction: str, references) -> float:
    matches = [ref == normalized_prediction for ref in references]
    total = sum(matches)
    accs = [min(1, float(total - m) / 3) for m in matches]
    return float(sum(accs)) / len(accs)


def vqa_question_accuracy(prediction: str, references, reference_processing: str = "official") -> float:
    """Accuracy (fraction in [0, 1]) of one predicted answer against the ground-truth answers of a question."""
    if isinstance(references, str):
        raise TypeError("references must be a list of answers, not a string")
    if len(references) == 0:
        raise ValueError("a question needs at least one ground-truth answer")
    refs = _process_references(references, reference_processing)
    return _leave_one_out_accuracy(normalize_vqa_answer(prediction), refs)


def vqa_accuracy(
    predictions,
    references,
    answer_types=None,
    reference_processing: str = "official",
    return_per_question: bool = False,
) -> dict:
    """Dataset-level VQA accuracy; see the module docstring for the exact definition and output fields."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    if answer_types is not None:
        answer_types = list(answer_types)
        if len(answer_types) != len(predictions):
            raise ValueError(f"{len(answer_types)} answer_types but {len(predictions)} predictions")
    cache: dict = {}
    per_question = []
    for prediction, refs in zip(predictions, references, strict=True):
        if isinstance(refs, str):
            raise TypeError("each reference must be a list of answers, not a string")
        if len(refs) == 0:
            raise ValueError("a question needs at least one ground-truth answer")
        processed = _process_references(list(refs), reference_processing, cache)
        per_question.append(_leave_one_out_accuracy(normalize_vqa_answer(prediction), processed))
    total = float(sum(per_question))
    result = {
        "accuracy": total / len(per_question),
        "overall": round(100 * total / len(per_question), 2),
        "num_questions": len(per_question),
    }
    if answer_types is not None:
        by_type: dict = {}
        for answer_type, acc in zip(answer_types, per_question, strict=True):
            by_type.setdefault(answer_type, []).append(acc)
        result["per_answer_type"] = {
            answer_type: round(100 * float(sum(accs)) / len(accs), 2) for answer_type, accs in by_type.items()
        }
    if return_per_question:
        result["per_question"] = per_question
    return result


def vqa_soft_score(count: int) -> float:
    """Soft target score of an answer given by `count` of the (10) annotators: 0, 0.3, 0.6, 0.9, 1.0 for
    0, 1, 2, 3, >= 4 (the Bottom-Up / LXMERT / Oscar VQA preprocessing table)."""
    if isinstance(count, bool) or int(count) != count:
        raise TypeError(f"count must be an integer, got {count!r}")
    count = int(count)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return VQA_SOFT_SCORES[count] if count < len(VQA_SOFT_SCORES) else 1.0


def vqa_answer_scores(answers, normalize: bool = True) -> dict:
    """Soft target scores of the distinct answers of one question: `{answer: vqa_soft_score(count)}`.

    With `normalize=True` every annotator answer is first normalized with [`normalize_vqa_answer`] (the same
    processing as the Bottom-Up `compute_softscore.py`), so "Two" and "2" count as the same answer.
    """
    if isinstance(answers, str):
        raise TypeError("answers must be a list of answers, not a string")
    counts = Counter(normalize_vqa_answer(a) if normalize else a for a in answers)
    return {answer: vqa_soft_score(count) for answer, count in counts.items()}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VQAAccuracy(evaluate.Metric):
    """VQA v2 accuracy (official evaluator semantics)."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            homepage="https://visualqa.org/evaluation.html",
            codebase_urls=["https://github.com/GT-Vision-Lab/VQA"],
            reference_urls=["https://visualqa.org/evaluation.html"],
        )

    def _compute(
        self,
        predictions,
        references,
        answer_types=None,
        reference_processing: str = "official",
        return_per_question: bool = False,
    ):
        return vqa_accuracy(
            predictions,
            references,
            answer_types=answer_types,
            reference_processing=reference_processing,
            return_per_question=return_per_question,
        )
