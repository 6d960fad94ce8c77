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
"""The official downstream metrics, as `evaluate` modules shipped inside the package.

Hub metric names cannot be fetched offline, so every metric is a local `evaluate` module, one folder per
metric holding a single, self-contained module file named like the folder:

| name               | task                | `compute(...)` inputs                                   | main outputs |
|--------------------|---------------------|---------------------------------------------------------|--------------|
| `vqa_accuracy`     | VQA v2              | `predictions: list[str]`, `references: list[list[str]]` | `accuracy` (fraction), `overall` (percent, official) |
| `gqa_accuracy`     | GQA                 | `predictions: list[str]`, `references: list[str]`       | `accuracy` (fraction) |
| `nlvr2`            | NLVR2               | `predictions`, `references`, `identifiers`              | `accuracy`, `consistency` (fractions) |
| `retrieval_recall` | image-text retrieval| `scores` (num_images x num_texts), `text_to_image`      | `i2t_r1/5/10`, `t2i_r1/5/10`, `rsum` (percent) |

    >>> from processing.metrics import load_metric, metric_path
    >>> vqa = load_metric("vqa_accuracy")            # == evaluate.load(metric_path("vqa_accuracy"))
    >>> vqa.compute(predictions=["two"], references=[["2"] * 10])["accuracy"]
    1.0

The definitions (and every quirk of the official scripts that they reproduce) are documented in the
module files. The same computations are available as plain functions, re-exported here.
"""

from pathlib import Path

from .gqa_accuracy.gqa_accuracy import gqa_accuracy, normalize_gqa_answer
from .nlvr2.nlvr2 import nlvr2_label, nlvr2_metrics, nlvr2_sentence_id
from .retrieval_recall.retrieval_recall import retrieval_ranks, retrieval_recall
from .vqa_accuracy.vqa_accuracy import (
    normalize_vqa_answer,
    process_digit_article,
    process_punctuation,
    vqa_accuracy,
    vqa_answer_scores,
    vqa_question_accuracy,
    vqa_soft_score,
)


METRIC_NAMES = ("vqa_accuracy", "gqa_accuracy", "nlvr2", "retrieval_recall")

_METRICS_DIR = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """The folder of the metric `name`, to pass to `evaluate.load` (it holds `<name>/<name>.py`)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(METRIC_NAMES)}")
    path = _METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        raise FileNotFoundError(f"metric module {path / (name + '.py')} is missing from the installation")
    return str(path)


def load_metric(name: str, **kwargs):
    """`evaluate.load(metric_path(name), **kwargs)`: works offline (nothing is fetched from the Hub)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = [
    "METRIC_NAMES",
    "gqa_accuracy",
    "load_metric",
    "metric_path",
    "nlvr2_label",
    "nlvr2_metrics",
    "nlvr2_sentence_id",
    "normalize_gqa_answer",
    "normalize_vqa_answer",
    "process_digit_article",
    "process_punctuation",
    "retrieval_ranks",
    "retrieval_recall",
    "vqa_accuracy",
    "vqa_answer_scores",
    "vqa_question_accuracy",
    "vqa_soft_score",
]
