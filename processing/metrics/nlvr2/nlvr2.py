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
"""NLVR2 accuracy and consistency, as the official `nlvr2/eval/metrics.py` of lil-lab/nlvr.

This file is an `evaluate` metric module and is SELF-CONTAINED (`evaluate.load(folder)` copies only this
file): it imports nothing but `evaluate`, `datasets` and the standard library.

Definitions (official script):

- An NLVR2 identifier is `split-setid-pairid-sentenceid` (e.g. `dev-850-0-0`): the same sentence is paired
  with several image pairs, which differ in the THIRD field. The official script groups examples by the
  identifier with that field blanked (`parts = identifier.split("-"); parts[2] = ""; "-".join(parts)`,
  so `dev-850-0-0` and `dev-850-3-0` are the sentence `dev-850--0`). It is NOT the identifier without its
  last `-N` (that is the image-pair stem `dev-850-0`, one example per image pair and sentence).
- accuracy = correct / number of examples (the script prints it as "precision"), a fraction in [0, 1].
- consistency = fraction of unique sentences ALL of whose examples are predicted correctly, in [0, 1].
- The script compares labels case-insensitively as strings ("True"/"true"); here a label may also be a
  bool or an integer 0/1 (1 = "True"), or the strings "1"/"0". Any other value is an error.
"""

import datasets
import evaluate


_CITATION = """\
@inproceedings{suhr2019corpus,
  title={A Corpus for Reasoning about Natural Language Grounded in Photographs},
  author={Suhr, Alane and Zhou, Stephanie and Zhang, Ally and Zhang, Iris and Bai, Huajun and Artzi, Yoav},
  booktitle={ACL},
  year={2019}
}
"""

_DESCRIPTION = """\
NLVR2 accuracy and consistency (official lil-lab/nlvr definition): consistency is the fraction of unique
sentences (identifier with its image-pair field blanked) whose examples are all predicted correctly.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str | int | bool]`): predicted labels, "True"/"False" (any case), 1/0 or booleans.
    references (`list[str | int | bool]`): gold labels, same formats.
    identifiers (`list[str]`): NLVR2 identifiers `split-setid-pairid-sentenceid`, e.g. "dev-850-0-0".
Returns:
    accuracy (`float`): fraction of correct examples, in [0, 1].
    consistency (`float`): fraction of unique sentences whose examples are all correct, in [0, 1].
    num_examples (`int`), num_sentences (`int`): the two denominators.
Examples:
    >>> nlvr2 = evaluate.load("processing/metrics/nlvr2")
    >>> nlvr2.compute(predictions=[1, 0], references=["True", "True"], identifiers=["dev-1-0-0", "dev-1-1-0"])
    {'accuracy': 0.5, 'consistency': 0.0, 'num_examples': 2, 'num_sentences': 1}
"""

_TRUE = ("true", "1")
_FALSE = ("false", "0")


def nlvr2_label(label) -> bool:
    """Read an NLVR2 label: "True"/"False" (any case, surrounding spaces ignored), "1"/"0", 1/0 or a bool."""
    if isinstance(label, str):
        text = label.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    elif isinstance(label, bool):
        return label
    else:
        try:
            value = int(label)
        except (TypeError, ValueError):
            value = None
        if value is not None and value == label and value in (0, 1):
            return bool(value)
    raise ValueError(f"not an NLVR2 label (expected 'True'/'False', 1/0 or a bool): {label!r}")


def nlvr2_sentence_id(identifier: str) -> str:
    """The unique-sentence key of the official script: the identifier with its third field (image pair)
    blanked, e.g. `dev-850-0-0` -> `dev-850--0`."""
    parts = str(identifier).split("-")
    if len(parts) < 3:
        raise ValueError(f"not an NLVR2 identifier (split-setid-pairid-sentenceid): {identifier!r}")
    parts[2] = ""
    return "-".join(parts)


def nlvr2_metrics(predictions, references, identifiers) -> dict:
    """Accuracy and consistency; see the module docstring."""
    predictions, references, identifiers = list(predictions), list(references), list(identifiers)
    if not len(predictions) == len(references) == len(identifiers):
        raise ValueError(
            f"{len(predictions)} predictions, {len(references)} references and {len(identifiers)} identifiers"
        )
    if not predictions:
        raise ValueError("no predictions to evaluate")
    num_correct = 0
    consistent: dict = {}
    for prediction, reference, identifier in zip(predictions, references, identifiers, strict=True):
        key = nlvr2_sentence_id(identifier)
        consistent.setdefault(key, True)
        if nlvr2_label(prediction) == nlvr2_label(reference):
            num_correct += 1
        else:
            consistent[key] = False
    return {
        "accuracy": num_correct / len(predictions),
        "consistency": sum(consistent.values()) / len(consistent),
        "num_examples": len(predictions),
        "num_sentences": len(consistent),
    }


def _features(prediction_type: str, reference_type: str):
    return datasets.Features(
        {
            "predictions": datasets.Value(prediction_type),
            "references": datasets.Value(reference_type),
            "identifiers": datasets.Value("string"),
        }
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NLVR2(evaluate.Metric):
    """NLVR2 accuracy and consistency."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # Labels as strings ("True"/"False") or integers (1/0, bools), in any combination.
            features=[
                _features("string", "string"),
                _features("int64", "string"),
                _features("string", "int64"),
                _features("int64", "int64"),
            ],
            homepage="https://lil.nlp.cornell.edu/nlvr/",
            codebase_urls=["https://github.com/lil-lab/nlvr/tree/master/nlvr2/eval"],
            reference_urls=["https://github.com/lil-lab/nlvr/tree/master/nlvr2"],
        )

    def _compute(self, predictions, references, identifiers):
        return nlvr2_metrics(predictions, references, identifiers)
