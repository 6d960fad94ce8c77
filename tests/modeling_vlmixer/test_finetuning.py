"""`vlmixer finetune {vqa,gqa,nlvr2,retrieval}`: Trainer fine-tuning from the standard file layouts, one process
and two (`accelerate launch --multi_gpu --num_processes 2`, two CPU processes over gloo)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modeling_vlmixer import (
    AutoModelForVisualReasoning,
    VLMixerConfig,
    VLMixerForPreTraining,
    VLMixerForQuestionAnswering,
)
from modeling_vlmixer.finetuning import main as finetune_main
from modeling_vlmixer.finetuning import parse_args
from processing.region_store import RegionStore
from processing.synthetic import make_synthetic_corpus
from tests.conftest import TINY


REPO = Path(__file__).resolve().parents[2]
FEATURE_DIM = 16
NUM_IMAGES = 12


def _write_json(path: Path, content) -> str:
    path.write_text(json.dumps(content))
    return str(path)


def _vqa_files(root: Path, records, split: str, first_question_id: int) -> tuple[str, str]:
    """VQA v2 questions + annotations: per image, 'what is the first object?' answered by its first label."""
    questions, annotations = [], []
    for number, record in enumerate(records):
        image_id = int(record.image_id.split("-")[1])
        for offset, (question, answer) in enumerate(
            [
                ("what is the first object?", record.labels[0]),
                ("how many objects are there?", str(len(record.labels))),
            ]
        ):
            question_id = first_question_id + 10 * number + offset
            questions.append({"image_id": image_id, "question": question, "question_id": question_id})
            annotations.append(
                {
                    "question_id": question_id,
                    "image_id": image_id,
                    "multiple_choice_answer": answer,
                    "answers": [
                        {"answer": answer, "answer_confidence": "yes", "answer_id": i + 1} for i in range(10)
                    ],
                    "question_type": "what",
                    "answer_type": "other",
                }
            )
    return (
        _write_json(root / f"v2_OpenEnded_mscoco_{split}_questions.json", {"questions": questions}),
        _write_json(root / f"v2_mscoco_{split}_annotations.json", {"annotations": annotations}),
    )


@pytest.fixture(scope="module")
def finetuning_world(tmp_path_factory, minilm_path):
    """A tiny pre-trained checkpoint with its processor, a region store, and every task's files."""
    from transformers import AutoTokenizer

    from processing import VLMixerProcessor, VLMixerRegionFeatureExtractor, add_image_token

    root = tmp_path_factory.mktemp("finetuning_world")
    corpus = make_synthetic_corpus(num_images=NUM_IMAGES, num_sentences=4, feature_dim=FEATURE_DIM, seed=0)
    tokenizer, image_token_id = add_image_token(AutoTokenizer.from_pretrained(minilm_path))
    processor = VLMixerProcessor(
        VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM, max_regions=4), tokenizer, tavp_max_length=32
    )
    config = VLMixerConfig(
        **{
            **TINY,
            "vocab_size": len(tokenizer),
            "visual_feature_dim": FEATURE_DIM,
            "image_token_id": image_token_id,
        }
    )
    torch.manual_seed(0)
    VLMixerForPreTraining(config).save_pretrained(root / "pretrained")
    processor.save_pretrained(root / "pretrained")

    # NLVR2 names its images "<split>-<n>-<k>-img0/1": the same regions under those names too.
    nlvr2_records = []
    for number in range(NUM_IMAGES // 2):
        for side in (0, 1):
            record = corpus.records[2 * number + side]
            nlvr2_records.append(dataclasses.replace(record, image_id=f"train-{number}-0-img{side}"))
    store = RegionStore.from_records(
        corpus.records + nlvr2_records, root / "regions", feature_dtype="float32"
    )

    train_questions, train_annotations = _vqa_files(root, corpus.records[:8], "train2014", 1000)
    eval_questions, eval_annotations = _vqa_files(root, corpus.records[8:], "val2014", 5000)
    gqa = {
        f"0{number}": {"imageId": record.image_id, "question": "what is first?", "answer": record.labels[0]}
        for number, record in enumerate(corpus.records)
    }
    nlvr2_lines = [
        json.dumps(
            {
                "identifier": f"train-{number}-0-0",
                "sentence": f"one image has a {corpus.records[2 * number].labels[0]}.",
                "label": "True" if number % 2 else "False",
            }
        )
        for number in range(NUM_IMAGES // 2)
    ]
    (root / "nlvr2.json").write_text("\n".join(nlvr2_lines) + "\n")
    karpathy = {
        "images": [
            {
                "filename": f"{record.image_id}.jpg",
                "imgid": number,
                "split": "train" if number < 8 else "test",
                "sentences": [{"raw": f"a {label} in a picture."} for label in record.labels],
            }
            for number, record in enumerate(corpus.records)
        ]
    }
    return {
        "root": root,
        "store": store,
        "pretrained": str(root / "pretrained"),
        "vqa": (train_questions, train_annotations, eval_questions, eval_annotations),
        "gqa": _write_json(root / "gqa_balanced_questions.json", gqa),
        "nlvr2": str(root / "nlvr2.json"),
        "karpathy": _write_json(root / "dataset_coco.json", karpathy),
    }


def _common(world, output_dir: Path, **overrides) -> list[str]:
    options = {
        "model_name_or_path": world["pretrained"],
        "region_store": str(world["store"].path),
        "output_dir": str(output_dir),
        "per_device_train_batch_size": "4",
        "per_device_eval_batch_size": "4",
        "learning_rate": "1e-3",
        "max_steps": "4",
        "save_strategy": "steps",
        "save_steps": "2",
        "logging_steps": "1",
        "use_cpu": "true",
        "disable_tqdm": "true",
        "seed": "0",
        **overrides,
    }
    return [item for key, value in options.items() for item in (f"--{key}", value)]


def _vqa_options(world) -> list[str]:
    train_q, train_a, eval_q, eval_a = world["vqa"]
    return [
        "--train_file", train_q, "--train_annotations", train_a,
        "--eval_file", eval_q, "--eval_annotations", eval_a,
        "--vqa_image_id_format", "synthetic-{image_id}", "--min_answer_count", "1",
    ]  # fmt: skip


def test_finetune_vqa_keeps_the_best_checkpoint_and_saves_a_loadable_model(tmp_path, finetuning_world):
    output_dir = tmp_path / "vqa"
    eval_questions = finetuning_world["vqa"][2]
    finetune_main(
        [
            "vqa",
            *_common(finetuning_world, output_dir),
            *_vqa_options(finetuning_world),
            "--predict_file",
            eval_questions,
        ]
    )
    metrics = json.loads((output_dir / "eval_results.json").read_text())
    assert 0.0 <= metrics["eval_vqa_accuracy"] <= 1.0

    state = json.loads((output_dir / "checkpoint-4" / "trainer_state.json").read_text())
    evaluated = {
        entry["step"]: entry["eval_vqa_accuracy"]
        for entry in state["log_history"]
        if "eval_vqa_accuracy" in entry
    }
    assert set(evaluated) == {2, 4}
    best_step = max(evaluated, key=lambda step: (evaluated[step], -step))
    assert state["best_model_checkpoint"].endswith(f"checkpoint-{best_step}")
    # The final model is the best checkpoint's.
    final = load_file(output_dir / "model.safetensors")
    best = load_file(output_dir / f"checkpoint-{best_step}" / "model.safetensors")
    assert all(torch.equal(final[name], best[name]) for name in final)

    model = VLMixerForQuestionAnswering.from_pretrained(output_dir)
    assert model.config.problem_type == "multi_label_classification"
    answers = set(model.config.id2label.values())
    assert {"2", "3"} <= answers and len(answers) == model.config.num_labels
    # Predictions in the official VQA results format, one per question, agreeing with the reported accuracy.
    predictions = json.loads((output_dir / "predictions.json").read_text())
    questions = json.loads(Path(eval_questions).read_text())["questions"]
    assert [p["question_id"] for p in predictions] == [q["question_id"] for q in questions]
    assert all(p["answer"] in answers for p in predictions)
    annotations = json.loads(Path(finetuning_world["vqa"][3]).read_text())["annotations"]
    correct = [
        p["answer"] == a["multiple_choice_answer"] for p, a in zip(predictions, annotations, strict=True)
    ]
    assert metrics["eval_vqa_accuracy"] == pytest.approx(sum(correct) / len(correct))
    files = set(os.listdir(output_dir))
    assert {"processor_config.json", "model.safetensors"} <= files and "gallery" not in files


def test_finetune_gqa_and_nlvr2(tmp_path, finetuning_world):
    world = finetuning_world
    finetune_main(
        [
            "gqa",
            *_common(world, tmp_path / "gqa", max_steps="2"),
            "--train_file",
            world["gqa"],
            "--eval_file",
            world["gqa"],
        ]
    )
    gqa = VLMixerForQuestionAnswering.from_pretrained(tmp_path / "gqa")
    assert gqa.config.problem_type == "single_label_classification"
    assert json.loads((tmp_path / "gqa" / "eval_results.json").read_text())["eval_accuracy"] >= 0

    finetune_main(
        [
            "nlvr2",
            *_common(world, tmp_path / "nlvr2", max_steps="2"),
            "--train_file",
            world["nlvr2"],
            "--eval_file",
            world["nlvr2"],
        ]
    )
    results = json.loads((tmp_path / "nlvr2" / "eval_results.json").read_text())
    assert {"eval_accuracy", "eval_consistency"} <= set(results)
    nlvr2 = AutoModelForVisualReasoning.from_pretrained(tmp_path / "nlvr2")
    assert nlvr2.config.id2label == {0: "False", 1: "True"}


def test_finetune_rejects_an_unknown_task_and_missing_annotations(finetuning_world, tmp_path):
    with pytest.raises(SystemExit, match="usage: vlmixer finetune"):
        parse_args(["captioning"])
    train_q = finetuning_world["vqa"][0]
    with pytest.raises(ValueError, match="needs --train_annotations"):
        finetune_main(["vqa", *_common(finetuning_world, tmp_path / "x"), "--train_file", train_q])


def test_finetune_under_two_processes_equals_one_process(tmp_path, finetuning_world):
    """Two processes with per-device batch 2 save the same model as one process with batch 4 (same global
    batches, gradients averaged across the two)."""

    def options(output_dir, batch_size):
        return [
            "vqa",
            *_common(
                finetuning_world,
                output_dir,
                per_device_train_batch_size=str(batch_size),
                max_steps="3",
                save_strategy="no",
                keep_best="false",
                dataloader_num_workers="0",
                log_level="info",
            ),
            *_vqa_options(finetuning_world)[:4],
            *_vqa_options(finetuning_world)[8:],
        ]

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29527",
        "-m", "modeling_vlmixer.finetuning",
    ]  # fmt: skip
    result = subprocess.run(
        [*launch, *options(tmp_path / "two", 2)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # Two processes of 2 examples each make the same global batch of 4 as the single process below.
    assert "Instantaneous batch size per device = 2" in result.stderr
    assert "Total train batch size (w. parallel, distributed & accumulation) = 4" in result.stderr
    single = subprocess.run(
        [sys.executable, "-m", "modeling_vlmixer.finetuning", *options(tmp_path / "one", 4)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert single.returncode == 0, single.stderr[-4000:]
    two, one = (
        load_file(tmp_path / "two" / "model.safetensors"),
        load_file(tmp_path / "one" / "model.safetensors"),
    )
    initial = load_file(Path(finetuning_world["pretrained"]) / "model.safetensors")
    assert set(two) == set(one)
    for name in two:
        torch.testing.assert_close(two[name], one[name], atol=1e-6, rtol=1e-5, msg=name)
    moved = [name for name in two if name in initial and not torch.equal(two[name], initial[name])]
    assert moved, "fine-tuning did not change the encoder"


def test_easy_vqa_end_to_end_beats_the_majority_answer(tmp_path, minilm_path):
    """A real third-party dataset: easy-VQA's images through the shape detector into a region store, its
    questions in the VQA v2 layout, a tiny VLMixer (2 layers, hidden 64) fine-tuned with `vlmixer finetune vqa`;
    on test questions it beats the majority answer of its training questions."""
    pytest.importorskip("easy_vqa")
    from collections import Counter

    from transformers import AutoTokenizer

    from processing import VLMixerProcessor, VLMixerRegionFeatureExtractor, add_image_token
    from processing.easy_vqa import export_vqa_v2, load_easy_vqa, store_image_id
    from processing.metrics import vqa_accuracy
    from processing.shape_detector import FEATURE_DIM, detect_to_store

    train_questions, train_paths = load_easy_vqa("train")
    test_questions, test_paths = load_easy_vqa("test")
    train_questions = [q for q in train_questions if q.image_id < 300]
    test_questions = [q for q in test_questions if q.image_id < 40]
    paths = {store_image_id("train", i): train_paths[i] for i in range(300)}
    paths.update({store_image_id("test", i): test_paths[i] for i in range(40)})
    detect_to_store(paths, tmp_path / "regions", show_progress=False)
    train_q, train_a = export_vqa_v2(train_questions, tmp_path / "vqa", "train")
    test_q, test_a = export_vqa_v2(test_questions, tmp_path / "vqa", "test")

    tokenizer, image_token_id = add_image_token(AutoTokenizer.from_pretrained(minilm_path))
    torch.manual_seed(0)
    config = VLMixerConfig(
        **{
            **TINY,
            "hidden_size": 64,
            "intermediate_size": 128,
            "vocab_size": len(tokenizer),
            "visual_feature_dim": FEATURE_DIM,
            "image_token_id": image_token_id,
        }
    )
    VLMixerForPreTraining(config).save_pretrained(tmp_path / "tiny")
    VLMixerProcessor(
        VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM, max_regions=4), tokenizer, tavp_max_length=32
    ).save_pretrained(tmp_path / "tiny")

    finetune_main(
        [
            "vqa",
            "--model_name_or_path", str(tmp_path / "tiny"), "--region_store", str(tmp_path / "regions"),
            "--train_file", str(train_q), "--train_annotations", str(train_a),
            "--eval_file", str(test_q), "--eval_annotations", str(test_a), "--predict_file", str(test_q),
            "--vqa_image_id_format", "train-{image_id}", "--vqa_eval_image_id_format", "test-{image_id}",
            "--min_answer_count", "1", "--keep_best", "false",
            "--output_dir", str(tmp_path / "run"), "--num_train_epochs", "4", "--learning_rate", "1e-3",
            "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "128",
            "--save_strategy", "no", "--use_cpu", "true", "--disable_tqdm", "true", "--seed", "0",
        ]
    )  # fmt: skip
    predictions = json.loads((tmp_path / "run" / "predictions.json").read_text())
    references = [[q.answer] * 10 for q in test_questions]
    accuracy = vqa_accuracy([p["answer"] for p in predictions], references)["accuracy"]
    majority = Counter(q.answer for q in train_questions).most_common(1)[0][0]
    baseline = vqa_accuracy([majority] * len(test_questions), references)["accuracy"]
    reported = json.loads((tmp_path / "run" / "eval_results.json").read_text())["eval_vqa_accuracy"]
    assert reported == pytest.approx(accuracy)
    print(
        f"easy-VQA test ({len(test_questions)} questions): fine-tuned {accuracy:.3f}, majority {baseline:.3f}"
    )
    assert accuracy > baseline + 0.1, (accuracy, baseline)
