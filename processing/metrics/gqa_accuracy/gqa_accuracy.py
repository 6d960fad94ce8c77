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
"""GQA accuracy: exact match of the predicted and the gold answer.

This file is an `evaluate` metric module and is SELF-CONTAINED (`evaluate.load(folder)` copies only this
file): it imports nothing but `evaluate`, `datasets` and the standard library.

The official GQA `eval.py` compares the predicted answer with the gold answer directly
(`predicted == gold`); GQA answers are lower-case and carry no surrounding whitespace, so comparing after
`strip().lower()` of both sides (what this metric does, to forgive a model's capitalisation or a stray
space) gives the same numbers on GQA's own answers. No other normalization is applied (no punctuation,
article or number-word processing: that is VQA's evaluator, not GQA's). Only the accuracy is computed; GQA's
consistency / validity / plausibility / distribution metrics need the balanced-question metadata and are
not part of this module.
"""

import datasets
import evaluate


_CITATION = """\
@inproceedings{hudson2019gqa,
  title={{GQA}: A New Dataset for Real-World Visual Reasoning and Compositional Question Answering},
  author={Hudson, Drew A. and Manning, Christopher D.},
  booktitle={CVPR},
  year={2019}
}
"""

_DESCRIPTION = """\
GQA accuracy: the fraction of questions whose predicted answer equals the gold answer, compared after
stripping and lower-casing both (GQA's official evaluation compares the answers directly).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one predicted answer per question.
    references (`list[str]`): the gold answer of each question.
Returns:
    accuracy (`float`): fraction of exact matches, in [0, 1].
    num_questions (`int`): number of questions.
Examples:
    >>> gqa = evaluate.load("processing/metrics/gqa_accuracy")
    >>> gqa.compute(predictions=["Yes", "left"], references=["yes", "right"])
    {'accuracy': 0.5, 'num_questions': 2}
"""


def normalize_gqa_answer(answer: str) -> str:
    return answer.strip().lower()


def gqa_accuracy(predictions, references) -> dict:
    """Exact-match accuracy after `strip().lower()`; see the module docstring."""
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    correct = sum(
        normalize_gqa_answer(prediction) == normalize_gqa_answer(reference)
        for prediction, reference in zip(predictions, references, strict=True)
    )
    return {"accuracy": correct / len(predictions), "num_questions": len(predictions)}


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GQAAccuracy(evaluate.Metric):
    """GQA exact-match accuracy."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            homepage="https://cs.stanford.edu/people/dorarad/gqa/evaluate.html",
            reference_urls=["https://cs.stanford.edu/people/dorarad/gqa/evaluate.html"],
        )

    def _compute(self, predictions, references):
        return gqa_accuracy(predictions, references)
