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
"""Model cards for VLMixer checkpoints, rendered with `huggingface_hub.ModelCard` from `model_cards/`.

[`create_model_card`] fills the template `model_cards/vlmixer_model_card.md` (Jinja2 + YAML front matter)
from the model's configuration, the processor (detector provenance and feature format from its feature
extractor, the patch gallery, the CMC settings) and what the caller knows: evaluation results (written to
the `model-index` metadata as `EvalResult`s), pre-training corpora, training settings, intended use and
limitations. The VLMixer citation (Wang et al., ICML 2022) is always included.

Not Hub remote code: this module may import `huggingface_hub` freely.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData


__all__ = [
    "DEFAULT_TEMPLATE_PATH",
    "PAPER_RESULTS",
    "VLMIXER_CITATION",
    "create_model_card",
]

DEFAULT_TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "model_cards" / "vlmixer_model_card.md"

VLMIXER_CITATION = """@inproceedings{wang2022vlmixer,
  title     = {{VLMixer}: Unpaired Vision-Language Pre-training via Cross-Modal {CutMix}},
  author    = {Wang, Teng and Jiang, Wenhao and Lu, Zhichao and Zheng, Feng and Cheng, Ran and Yin, Chengguo and Luo, Ping},
  booktitle = {Proceedings of the 39th International Conference on Machine Learning},
  series    = {Proceedings of Machine Learning Research},
  volume    = {162},
  pages     = {22680--22690},
  publisher = {PMLR},
  year      = {2022},
  url       = {https://proceedings.mlr.press/v162/wang22h.html}
}"""

# The paper's numbers (BERT-base, COCO-only unpaired pre-training), shown in the card as context only.
PAPER_RESULTS = [
    {"task": "VQA v2", "split": "test-dev", "metric": "VQA accuracy", "value": "72.60"},
    {"task": "NLVR2", "split": "dev / test-P", "metric": "accuracy", "value": "72.71 / 73.08"},
    {"task": "GQA", "split": "test-dev", "metric": "accuracy", "value": "63.13"},
    {
        "task": "COCO 5K text retrieval",
        "split": "test",
        "metric": "R@1 / R@5 / R@10",
        "value": "62.69 / 87.35 / 93.64",
    },
    {
        "task": "COCO 5K image retrieval",
        "split": "test",
        "metric": "R@1 / R@5 / R@10",
        "value": "47.95 / 77.06 / 86.22",
    },
]

DEFAULT_INTENDED_USE = (
    "A pre-trained vision-language encoder, meant to be fine-tuned on downstream tasks that read images as "
    "detector region features and text as word pieces: visual question answering (VQA v2, GQA), visual "
    "reasoning (NLVR2) and image-text retrieval, and to study unpaired vision-language pre-training. The "
    "masked-language-modeling head predicts word pieces, including the word a visual patch replaced."
)

DEFAULT_LIMITATIONS = (
    "- The model sees images only through an object detector: it is bound to that detector's feature space "
    "(see *Visual features*), vocabulary of concepts and failure modes; features of another detector, or "
    "boxes in another format, give meaningless outputs without any error.\n"
    "- Cross-modal alignment is learned implicitly from unpaired corpora, through the detector's concept "
    "labels: concepts the detector does not know are never grounded, and errors or biases of the detector "
    "labels become alignment errors.\n"
    "- It is an encoder: it does not generate captions or free-form answers, and needs a task head and "
    "fine-tuning for downstream use.\n"
    "- The text side inherits the biases of its corpora and of the BERT checkpoint it was initialized from; "
    "English only unless stated otherwise.\n"
    "- It was not evaluated for safety-critical or high-stakes uses and should not be used for them."
)

_PIPELINE_TAGS = {
    "ForMaskedLM": "fill-mask",
    "ForPreTraining": "fill-mask",
    "ForQuestionAnswering": "visual-question-answering",
    "ForVisualQuestionAnswering": "visual-question-answering",
    "Model": "feature-extraction",
}

_DEFAULT_TAGS = [
    "vlmixer",
    "vision-language",
    "multimodal",
    "cross-modal-cutmix",
    "unpaired-vlp",
    "custom_code",
]


def create_model_card(
    model: Any = None,
    processor: Any = None,
    *,
    repo_id: str | None = None,
    config: Any = None,
    model_name: str | None = None,
    model_description: str | None = None,
    eval_results: Sequence[EvalResult | Mapping[str, Any]] | None = None,
    pretraining_corpora: Sequence[Mapping[str, Any] | str] | None = None,
    training: Mapping[str, Any] | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] | None = None,
    license: str = "apache-2.0",
    language: str | Sequence[str] | None = "en",
    tags: Sequence[str] | None = None,
    pipeline_tag: str | None = None,
    intended_use: str | None = None,
    limitations: str | None = None,
    include_paper_results: bool = True,
    template_path: str | os.PathLike | None = None,
) -> ModelCard:
    """Renders the model card (`README.md`) of a VLMixer checkpoint.

    Args:
        model: The model (a `VLMixerPreTrainedModel`); its config describes the architecture and its class
            name the pipeline tag. May be `None` if `config` is given.
        processor: The `VLMixerProcessor`, if any: its feature extractor gives the detector provenance and
            the feature format, its gallery the patch-gallery summary, and its settings the CMC parameters.
        repo_id: The Hub repository id, used in the usage snippet (defaults to `model_name`).
        config: A `VLMixerConfig`, when no model is given.
        model_name: The card title and `model-index` name (defaults to the repository name).
        model_description: A paragraph about this checkpoint, shown under the title.
        eval_results: Results of *this* checkpoint, as `huggingface_hub.EvalResult`s or mappings of their
            fields (`task_type`, `dataset_type`, `dataset_name`, `metric_type`, `metric_value`, and optional
            ones such as `dataset_split`, `metric_name`, `task_name`); written to `model-index` and a table.
        pretraining_corpora: The corpora the checkpoint was pre-trained on: names, or mappings with `name`,
            `kind` (e.g. `"image-only"`, `"text-only"`), `size`, `description` and optional `dataset_id` (a Hub
            dataset id, added to the `datasets` metadata).
        training: Training settings to list (e.g. `{"steps": 100000, "batch size": 1024}`).
        base_model: The checkpoint the model was initialized from (e.g. `"bert-base-uncased"`).
        datasets: Hub dataset ids for the `datasets` metadata (in addition to the corpora's `dataset_id`s).
        license: License identifier for the metadata.
        language: Language code(s) for the metadata.
        tags: Extra tags (VLMixer tags are always added).
        pipeline_tag: Overrides the pipeline tag derived from the model class.
        intended_use: Replaces the default *Intended use* section.
        limitations: Replaces the default *Limitations* section.
        include_paper_results: Show the paper's reference numbers, labelled as such (never in `model-index`).
        template_path: Another Jinja2 Markdown template (default `model_cards/vlmixer_model_card.md`).

    Returns:
        A `huggingface_hub.ModelCard`; `card.save(path)` writes it, `str(card)` is its text.

    Raises:
        ValueError: If neither `model` nor `config` is given, or an evaluation result lacks a required field.
        FileNotFoundError: If the template cannot be found.
    """
    config = config if config is not None else getattr(model, "config", None)
    if config is None:
        raise ValueError("create_model_card needs the model or its config.")
    architecture = type(model).__name__ if model is not None else _architecture_from_config(config)
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else "VLMixer")
    repo_id = repo_id or model_name

    results = [_as_eval_result(result) for result in (eval_results or [])]
    corpora = [_as_corpus(corpus) for corpus in (pretraining_corpora or [])]
    dataset_ids = list(datasets or []) + [c["dataset_id"] for c in corpora if c.get("dataset_id")]

    card_data = ModelCardData(
        library_name="transformers",
        license=license,
        language=language,
        base_model=base_model,
        datasets=list(dict.fromkeys(dataset_ids)) or None,
        pipeline_tag=pipeline_tag or _pipeline_tag(architecture),
        tags=list(dict.fromkeys([*_DEFAULT_TAGS, *(tags or [])])),
        model_name=model_name,
        eval_results=results or None,
        metrics=sorted({result.metric_type for result in results}) or None,
    )

    template = Path(template_path) if template_path is not None else DEFAULT_TEMPLATE_PATH
    if not template.is_file():
        raise FileNotFoundError(
            f"Model card template {template} not found; pass template_path= (the default template lives in "
            "the repository's model_cards/ folder)."
        )
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        model_summary=f"A VLMixer checkpoint (`{architecture}`) for unpaired vision-language pre-training.",
        model_description=model_description,
        model=_model_summary(config, model, architecture),
        image_token=getattr(processor, "image_token", None),
        base_model=base_model,
        license=license,
        features=_feature_summary(processor),
        gallery=_gallery_summary(getattr(processor, "gallery", None)),
        cmc=_cmc_summary(processor),
        corpora=corpora,
        training=dict(training) if training else None,
        eval_results=results,
        paper_results=PAPER_RESULTS if include_paper_results else None,
        intended_use=intended_use or DEFAULT_INTENDED_USE,
        limitations=limitations or DEFAULT_LIMITATIONS,
        citation=VLMIXER_CITATION,
    )


def _architecture_from_config(config: Any) -> str:
    architectures = getattr(config, "architectures", None) or ["VLMixerModel"]
    return architectures[0]


def _pipeline_tag(architecture: str) -> str | None:
    for suffix, tag in _PIPELINE_TAGS.items():
        if architecture.endswith(suffix):
            return tag
    return None


def _as_eval_result(result: EvalResult | Mapping[str, Any]) -> EvalResult:
    if isinstance(result, EvalResult):
        return result
    missing = [
        k
        for k in ("task_type", "dataset_type", "dataset_name", "metric_type", "metric_value")
        if k not in result
    ]
    if missing:
        raise ValueError(f"Evaluation result {dict(result)!r} lacks {missing}.")
    return EvalResult(**result)


def _as_corpus(corpus: Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(corpus, str):
        corpus = {"name": corpus}
    if "name" not in corpus:
        raise ValueError(f"A pre-training corpus needs a name, got {dict(corpus)!r}.")
    return {"kind": "", "size": "", "description": "", **corpus}


def _model_summary(config: Any, model: Any, architecture: str) -> dict[str, Any]:
    keys = (
        "num_hidden_layers",
        "hidden_size",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "image_token_id",
        "max_position_embeddings",
        "visual_feature_dim",
    )
    summary = {key: getattr(config, key, None) for key in keys}
    summary["architecture"] = architecture
    summary["num_parameters"] = None
    if model is not None and hasattr(model, "num_parameters"):
        summary["num_parameters"] = f"{model.num_parameters():,}"
    return summary


def _feature_summary(processor: Any) -> dict[str, Any] | None:
    extractor = getattr(processor, "feature_extractor", None)
    if extractor is None:
        return None
    keys = ("detector", "feature_dim", "box_format", "feature_dtype", "max_regions", "min_score")
    return {key: getattr(extractor, key, None) for key in keys}


def _gallery_summary(gallery: Any) -> dict[str, Any] | None:
    if gallery is None:
        return None
    keys = ("num_patches", "num_concepts", "num_images", "detector", "feature_dim", "feature_dtype")
    return {key: getattr(gallery, key, None) for key in keys}


def _cmc_summary(processor: Any) -> dict[str, Any] | None:
    if processor is None or not hasattr(processor, "r_cmc"):
        return None
    keys = ("r_cmc", "r_ctx", "num_shots", "valp_max_length", "tavp_max_length")
    return {key: getattr(processor, key, None) for key in keys}
