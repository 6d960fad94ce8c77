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
"""Downstream fine-tuning with `transformers.Trainer`: VQA v2, GQA, NLVR2 and image-text retrieval.

    vlmixer finetune vqa --model_name_or_path pretrained/ --region_store regions/ \\
        --train_file v2_OpenEnded_mscoco_train2014_questions.json \\
        --train_annotations v2_mscoco_train2014_annotations.json \\
        --eval_file v2_OpenEnded_mscoco_val2014_questions.json \\
        --eval_annotations v2_mscoco_val2014_annotations.json --output_dir vqa-run
    vlmixer finetune gqa ... --train_file train_balanced_questions.json --eval_file testdev_balanced_questions.json
    vlmixer finetune nlvr2 ... --train_file train.json --eval_file dev.json          # NLVR2 JSON lines
    vlmixer finetune retrieval ... --train_file dataset_coco.json --eval_split test  # Karpathy split
    accelerate launch --multi_gpu --num_processes 8 -m modeling_vlmixer.finetuning vqa ...same options...
    vlmixer finetune vqa config.json   # the options as a JSON file

Every option of `transformers.TrainingArguments` is accepted (`--learning_rate`, `--num_train_epochs`,
`--push_to_hub`, `--hub_model_id`, `--bf16`, ...). The defaults are the paper's fine-tuning settings where it
gives them (Adam(W), lr 5e-5). This module wires readers, collators, heads and metrics together; it holds no
method logic of its own.
"""

import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from transformers import EvalPrediction, HfArgumentParser, Trainer, TrainingArguments, set_seed

from .modeling_vlmixer import (
    VLMixerForImageTextRetrieval,
    VLMixerForQuestionAnswering,
    VLMixerForVisualReasoning,
    VLMixerPreTrainedModel,
)


TASKS = ("vqa", "gqa", "nlvr2", "retrieval")
# The metric Trainer keeps the best checkpoint by (`metric_for_best_model`), per task.
BEST_METRIC = {"vqa": "vqa_accuracy", "gqa": "accuracy", "nlvr2": "accuracy", "retrieval": "loss"}


@dataclass
class FinetuningArguments:
    """Data and model options of `vlmixer finetune <task>`; the training options are `TrainingArguments`."""

    model_name_or_path: str = field(
        metadata={"help": "A VLMixer checkpoint (pre-trained or converted from BERT), folder or Hub repo."}
    )
    region_store: str = field(metadata={"help": "The region store of the task's images (`datasets` folder)."})
    train_file: str = field(
        metadata={
            "help": "VQA v2 questions JSON, GQA balanced questions JSON, NLVR2 JSON lines, or the Karpathy "
            "split captions JSON (dataset_coco.json)."
        }
    )
    train_annotations: str | None = field(default=None, metadata={"help": "VQA v2: the annotations JSON."})
    eval_file: str | None = field(
        default=None, metadata={"help": "Evaluation questions / statements (retrieval: the Karpathy JSON)."}
    )
    eval_annotations: str | None = field(default=None, metadata={"help": "VQA v2: evaluation annotations."})
    processor_name_or_path: str | None = field(
        default=None, metadata={"help": "The VLMixerProcessor (default: the one saved with the model)."}
    )
    vqa_image_id_format: str = field(
        default="{image_id}",
        metadata={
            "help": "VQA: the region-store key of a question's image, e.g. 'COCO_{data_subtype}_{image_id:012d}' "
            "for a store keyed by COCO file names."
        },
    )
    vqa_eval_image_id_format: str | None = field(
        default=None,
        metadata={"help": "VQA: the same for the evaluation questions (default: as for training)."},
    )
    min_answer_count: int = field(
        default=9, metadata={"help": "VQA: keep answers that are the answer of at least this many questions."}
    )
    train_split: str = field(default="train", metadata={"help": "Retrieval: the Karpathy split to train on."})
    eval_split: str = field(default="test", metadata={"help": "Retrieval: the Karpathy split to evaluate."})
    retrieval_k: int = field(
        default=32, metadata={"help": "Retrieval: shortlist size of the two-stage ranking (0: full ranking)."}
    )
    predict_file: str | None = field(
        default=None,
        metadata={
            "help": "Questions / statements to predict after training (VQA v2 questions JSON, GQA or NLVR2 file; "
            "no answers needed), written to <output_dir>/predictions.json in the official submission format."
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use the first N evaluation rows."})
    keep_best: bool = field(
        default=True,
        metadata={
            "help": "Evaluate at every save and reload the best checkpoint at the end (needs eval_file)."
        },
    )


@dataclass
class TaskData:
    """What a task's reader gives the trainer: datasets, the head class and its config, the collator."""

    model_class: type[VLMixerPreTrainedModel]
    train_dataset: Any
    eval_dataset: Any | None
    config_kwargs: dict[str, Any]
    collator: Callable
    compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None
    read_unlabelled: Callable[[str], Any] | None = None
    format_predictions: Callable[[Any, np.ndarray], list[dict[str, Any]]] | None = None


def _take(dataset, limit: int | None):
    return dataset if dataset is None or limit is None else dataset.select(range(min(limit, len(dataset))))


def load_task(task: str, args: FinetuningArguments, processor, region_store) -> TaskData:
    """Reads the task's files into `datasets` and picks the head, collator and metric."""
    from processing import downstream_collators as collators
    from processing import downstream_readers as readers
    from processing.metrics import gqa_accuracy, nlvr2_metrics, vqa_accuracy

    if task == "vqa":
        if args.train_annotations is None:
            raise ValueError(
                "vqa needs --train_annotations (the VQA v2 annotations JSON of the training split)."
            )
        label2id = readers.build_vqa_answer_vocabulary(
            [args.train_annotations], min_count=args.min_answer_count
        )
        train = readers.read_vqa_v2(
            args.train_file,
            args.train_annotations,
            label2id=label2id,
            image_id_format=args.vqa_image_id_format,
        )
        evaluation = None
        if args.eval_file is not None:
            if args.eval_annotations is None:
                raise ValueError("vqa: --eval_file needs --eval_annotations to be scored.")
            evaluation = readers.read_vqa_v2(
                args.eval_file,
                args.eval_annotations,
                label2id=label2id,
                image_id_format=args.vqa_eval_image_id_format or args.vqa_image_id_format,
            )
        id2label = {index: answer for answer, index in label2id.items()}
        evaluation = _take(evaluation, args.max_eval_samples)

        def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
            answers = [id2label[int(index)] for index in np.asarray(prediction.predictions).argmax(-1)]
            return {"vqa_accuracy": vqa_accuracy(answers, evaluation["answers"])["accuracy"]}

        return TaskData(
            VLMixerForQuestionAnswering,
            _take(train, args.max_train_samples),
            evaluation,
            {"id2label": id2label, "label2id": label2id, "problem_type": "multi_label_classification"},
            collators.DataCollatorForVQA(
                processor, region_store, len(label2id), "multi_label_classification"
            ),
            compute_metrics if evaluation is not None else None,
            lambda path: readers.read_vqa_v2(
                path, image_id_format=args.vqa_eval_image_id_format or args.vqa_image_id_format
            ),
            lambda rows, logits: [
                {"question_id": int(question_id), "answer": id2label[int(index)]}
                for question_id, index in zip(rows["question_id"], logits.argmax(-1), strict=True)
            ],
        )
    if task == "gqa":
        label2id = readers.build_gqa_answer_vocabulary(args.train_file)
        train = readers.read_gqa(args.train_file, label2id=label2id)
        evaluation = _take(
            None if args.eval_file is None else readers.read_gqa(args.eval_file, label2id=label2id),
            args.max_eval_samples,
        )
        id2label = {index: answer for answer, index in label2id.items()}

        def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
            answers = [id2label[int(index)] for index in np.asarray(prediction.predictions).argmax(-1)]
            return {"accuracy": gqa_accuracy(answers, evaluation["answer"])["accuracy"]}

        return TaskData(
            VLMixerForQuestionAnswering,
            _take(train, args.max_train_samples),
            evaluation,
            {"id2label": id2label, "label2id": label2id, "problem_type": "single_label_classification"},
            collators.DataCollatorForVQA(
                processor, region_store, len(label2id), "single_label_classification"
            ),
            compute_metrics if evaluation is not None else None,
            readers.read_gqa,
            lambda rows, logits: [
                {"questionId": question_id, "prediction": id2label[int(index)]}
                for question_id, index in zip(rows["question_id"], logits.argmax(-1), strict=True)
            ],
        )
    if task == "nlvr2":
        train = readers.read_nlvr2(args.train_file)
        evaluation = _take(
            None if args.eval_file is None else readers.read_nlvr2(args.eval_file), args.max_eval_samples
        )

        def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
            predicted = np.asarray(prediction.predictions).argmax(-1).tolist()
            return nlvr2_metrics(predicted, evaluation["label"], evaluation["identifier"])

        return TaskData(
            VLMixerForVisualReasoning,
            _take(train, args.max_train_samples),
            evaluation,
            {"id2label": {0: "False", 1: "True"}, "label2id": {"False": 0, "True": 1}},
            collators.DataCollatorForNLVR2(processor, region_store),
            compute_metrics if evaluation is not None else None,
            readers.read_nlvr2,
            lambda rows, logits: [
                {"identifier": identifier, "prediction": "True" if int(index) == 1 else "False"}
                for identifier, index in zip(rows["identifier"], logits.argmax(-1), strict=True)
            ],
        )
    if task == "retrieval":
        train = readers.read_karpathy(args.train_file, args.train_split)
        evaluation = _take(
            None if args.eval_file is None else readers.read_karpathy(args.eval_file, args.eval_split),
            args.max_eval_samples,
        )
        return TaskData(
            VLMixerForImageTextRetrieval,
            _take(train, args.max_train_samples),
            evaluation,
            {},
            collators.DataCollatorForImageTextRetrieval(processor, region_store, seed=0),
            None,
        )
    raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}.")


def _keep_best_checkpoint(training_args: TrainingArguments, metric: str) -> None:
    """Evaluates at every save and reloads the best checkpoint at the end, by the task's metric."""
    training_args.eval_strategy = training_args.save_strategy
    if training_args.save_strategy == "steps":
        training_args.eval_steps = training_args.save_steps
    training_args.load_best_model_at_end = True
    training_args.metric_for_best_model = metric
    training_args.greater_is_better = metric != "loss"


def finetune(task: str, args: FinetuningArguments, training_args: TrainingArguments) -> dict[str, float]:
    """Fine-tunes the task head with `Trainer`; saves the (best) model and its processor to `output_dir` and
    returns the final evaluation metrics (with the recall figures for retrieval)."""
    from processing import VLMixerProcessor
    from processing.region_store import RegionStore

    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; expected one of {', '.join(TASKS)}.")
    processor = VLMixerProcessor.from_pretrained(args.processor_name_or_path or args.model_name_or_path)
    processor.set_gallery(None)  # fine-tuning reads image + text; the patch gallery stays with pre-training
    region_store = RegionStore.load(args.region_store)
    data = load_task(task, args, processor, region_store)

    set_seed(training_args.seed)  # the new head's initialization, identical in every process and every run
    model = data.model_class.from_pretrained(args.model_name_or_path, **data.config_kwargs)
    processor.check_model_config(model.config)

    # The collators read raw columns (question, image ids); Trainer must not drop them.
    training_args.remove_unused_columns = False
    if task == "retrieval":
        training_args.label_names = ["labels"]
    if args.keep_best and data.eval_dataset is not None:
        _keep_best_checkpoint(training_args, BEST_METRIC[task])

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=data.train_dataset,
        eval_dataset=data.eval_dataset,
        data_collator=data.collator,
        processing_class=processor,
        compute_metrics=data.compute_metrics,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    metrics: dict[str, float] = {}
    if data.eval_dataset is not None:
        metrics = trainer.evaluate()
        if task == "retrieval":
            metrics.update(_retrieval_recall(trainer, processor, region_store, data.eval_dataset, args))
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if args.predict_file is not None:
        _write_predictions(
            trainer, data, args.predict_file, Path(training_args.output_dir) / "predictions.json"
        )
    return metrics


def _write_predictions(trainer: Trainer, data: TaskData, path: str, output: Path) -> None:
    """Predicts the rows of `path` and writes them, in the task's submission format, atomically."""
    if data.read_unlabelled is None:
        raise ValueError("--predict_file is for vqa, gqa and nlvr2; retrieval is evaluated by recall.")
    rows = data.read_unlabelled(path)
    rows = rows.remove_columns([name for name in ("labels", "scores", "label") if name in rows.column_names])
    logits = np.asarray(trainer.predict(rows).predictions)
    if trainer.is_world_process_zero():
        temporary = output.with_name(output.name + ".tmp")
        temporary.write_text(json.dumps(data.format_predictions(rows, logits)))
        os.replace(temporary, output)


def _retrieval_recall(trainer: Trainer, processor, region_store, evaluation, args) -> dict[str, float]:
    """R@1/5/10 in both directions on the evaluation split, two-stage with `retrieval_k` (0: full ranking)."""
    from .retrieval import evaluate_retrieval

    if not trainer.is_world_process_zero():
        return {}
    image_ids = sorted(set(evaluation["image_id"]))
    index_of = {image_id: index for index, image_id in enumerate(image_ids)}
    recall = evaluate_retrieval(
        trainer.model,
        processor,
        list(evaluation["caption"]),
        [region_store[image_id] for image_id in image_ids],
        text_to_image=[index_of[image_id] for image_id in evaluation["image_id"]],
        k=args.retrieval_k or None,
    )
    return {f"eval_{name}": value for name, value in recall.items()}


def parse_args(argv: list[str] | None = None) -> tuple[str, FinetuningArguments, TrainingArguments]:
    """`<task> [options | config.json]` -> (task, data/model options, `TrainingArguments`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in TASKS:
        raise SystemExit(f"usage: vlmixer finetune {{{','.join(TASKS)}}} [options]  (--help for the options)")
    task, rest = argv[0], argv[1:]
    parser = HfArgumentParser((FinetuningArguments, TrainingArguments))
    parser.prog = f"vlmixer finetune {task}"
    if len(rest) == 1 and rest[0].endswith(".json"):
        args, training_args = parser.parse_json_file(rest[0])
    else:
        defaults = {"--learning_rate": "5e-5", "--report_to": "none", "--save_total_limit": "2"}
        given = {option.split("=")[0] for option in rest if option.startswith("--")}
        rest = [
            *rest,
            *(item for key, value in defaults.items() if key not in given for item in (key, value)),
        ]
        args, training_args = parser.parse_args_into_dataclasses(rest)
    return task, args, training_args


def main(argv: list[str] | None = None) -> None:
    task, args, training_args = parse_args(argv)
    metrics = finetune(task, args, training_args)
    if metrics and int(os.environ.get("RANK", "0")) == 0:
        print(
            json.dumps(
                {key: (None if isinstance(v, float) and math.isnan(v) else v) for key, v in metrics.items()}
            )
        )
    print(f"fine-tuned model written to {Path(training_args.output_dir)}")


if __name__ == "__main__":
    main()
