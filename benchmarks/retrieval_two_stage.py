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
"""Image-text retrieval: full cross-encoder ranking against two-stage ranking (k=32). Prints its figures.

A COCO-5K-shaped synthetic task: a test set of 1,000 images with 5 captions each (5,000 captions, 5M
(image, caption) pairs).

- **Images** hold 2-4 regions of distinct concepts (out of 30), each with a colour (out of 6). A region's
  feature is `prototype(concept) + prototype(colour) + noise`; its detector label is the concept name only, so
  the colour is in the features alone.
- **Captions** mention 2-3 of the image's regions (a random subset, in random order), each with its colour
  with probability one half, in a few templates ("a red dog next to a car."). A caption fits every image
  that holds its concepts in its colours, so several images often fit one caption: retrieval is learnable,
  but R@1 stays well below 100% even for a perfect model.

The model: a tiny VLMixer (2 layers, hidden 64, a WordPiece vocabulary trained on the training captions),
trained on a separate synthetic training set of the same distribution (its own 4,000 images and 20,000
captions) in the paper's two steps:

1. unpaired VLMixer pre-training with `modeling_vlmixer.pretraining.pretrain` (the `vlmixer pretrain` entry
   point): VALP with cross-modal CutMix on the training captions as a text-only corpus (patch gallery built
   from the training images) and TAVP on the training images as an image-only corpus (their `RegionStore`);
2. image-text retrieval fine-tuning of `VLMixerForImageTextRetrieval` with `transformers.Trainer` and
   `DataCollatorForImageTextRetrieval` (matching loss on the positives and in-batch negatives + contrastive
   loss of the text-only and image-only views).

Pre-training is what makes the matching head trainable in a short run: from scratch (`--pretrain_steps 0`)
the matching loss of this tiny model stays at ln 2 for ~800 steps, since nothing ties a region feature to its
concept word yet, and after 1,500 steps the cross-encoder still ranks far worse than the embeddings (measured:
full-ranking R@1 9.3 / 6.9 against 65.8 / 52.4 for the embeddings on this test set). CMC pre-training grounds
the concept words in region features first (the MLM target of a patch is the word it replaced).

The test set is then ranked twice with `modeling_vlmixer.retrieval.rank_image_text`:

1. full ranking: the matching head scores all 5M pairs;
2. two stages: embeddings shortlist the top-k images of every caption and the top-k captions of every image,
   and the matching head re-ranks the union of the shortlists.

Printed: R@1/5/10 in both directions and RSUM of each (and of the embeddings alone), the share of pairs the
matching head scored, and the wall time of each. Target: two-stage R@1 within 1 point of full ranking in both
directions while scoring <= 5% of the pairs. Wall times depend on what else runs on the machine: the load
average is printed with them.

Usage:

    python benchmarks/retrieval_two_stage.py                            # the full 1,000 / 5,000 test set
    python benchmarks/retrieval_two_stage.py --num_test_images 200      # quick run (200,000 pairs)
    python benchmarks/retrieval_two_stage.py --pretrain_steps 0         # fine-tuning from scratch
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from modeling_vlmixer import VLMixerConfig, VLMixerForImageTextRetrieval  # noqa: E402
from modeling_vlmixer.pretraining import PretrainingArguments, pretrain  # noqa: E402
from modeling_vlmixer.retrieval import RetrievalScores, rank_image_text  # noqa: E402
from processing import PatchGallery, VLMixerProcessor, VLMixerRegionFeatureExtractor, train_tokenizer  # noqa: E402
from processing.downstream_collators import DataCollatorForImageTextRetrieval  # noqa: E402
from processing.feature_extraction_vlmixer import RegionFeatures  # noqa: E402
from processing.metrics import retrieval_recall  # noqa: E402
from processing.region_store import RegionStore  # noqa: E402


CONCEPTS = (
    "dog", "cat", "horse", "car", "boat", "tree", "bird", "chair", "table", "cup",
    "ball", "book", "lamp", "bed", "clock", "phone", "shoe", "hat", "bag", "bike",
    "bus", "train", "plane", "fish", "cake", "apple", "bottle", "kite", "sheep", "cow",
)  # fmt: skip
COLOURS = ("red", "blue", "green", "yellow", "black", "white")
TEMPLATES = {
    2: (
        "a {0} and a {1}.",
        "a {0} next to a {1}.",
        "there is a {0} near the {1}.",
        "a picture of a {0} with a {1}.",
    ),
    3: (
        "a {0}, a {1} and a {2}.",
        "a {0} next to a {1} and a {2}.",
        "there is a {0} near a {1} and a {2}.",
    ),
}
TARGET_R1_GAP = 1.0
TARGET_SCORED_SHARE = 0.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_test_images", type=int, default=1000)
    parser.add_argument("--captions_per_image", type=int, default=5)
    parser.add_argument("--num_train_images", type=int, default=4000)
    parser.add_argument("--feature_dim", type=int, default=32, help="region feature width")
    parser.add_argument(
        "--noise", type=float, default=0.5, help="std of the feature noise (prototypes ~ N(0, 1))"
    )
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--pretrain_steps", type=int, default=2000, help="VALP + TAVP pre-training steps")
    parser.add_argument("--max_steps", type=int, default=1500, help="retrieval fine-tuning steps")
    parser.add_argument("--train_batch_size", type=int, default=64, help="positive pairs per training batch")
    parser.add_argument(
        "--learning_rate", type=float, default=1e-3, help="of both pre-training and fine-tuning"
    )
    parser.add_argument("--k", type=int, default=32, help="shortlist size of the two-stage ranking")
    parser.add_argument("--batch_size", type=int, default=2048, help="pairs per joint forward pass")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no_progress",
        action="store_true",
        help="hide the progress bars of ranking, `datasets` and loading (all on stderr)",
    )
    return parser.parse_args(argv)


# -------------------------------------------------------------------------------------------------------------
# The synthetic task
# -------------------------------------------------------------------------------------------------------------


class SyntheticRetrievalWorld:
    """Concept and colour prototypes; draws images (region records) and captions that describe them."""

    def __init__(self, feature_dim: int, noise: float, seed: int):
        rng = np.random.default_rng(seed)
        self.concept_prototypes = rng.normal(size=(len(CONCEPTS), feature_dim)).astype(np.float32)
        self.colour_prototypes = rng.normal(size=(len(COLOURS), feature_dim)).astype(np.float32)
        self.noise = noise

    def images(
        self, count: int, rng: np.random.Generator, prefix: str
    ) -> tuple[list[RegionFeatures], list[list[tuple[int, int]]]]:
        """`count` images: their region records and their `(concept, colour)` contents."""
        records, contents = [], []
        feature_dim = self.concept_prototypes.shape[1]
        for index in range(count):
            num_regions = int(rng.integers(2, 5))
            concepts = rng.choice(len(CONCEPTS), size=num_regions, replace=False)
            colours = rng.integers(len(COLOURS), size=num_regions)
            features = (
                self.concept_prototypes[concepts]
                + self.colour_prototypes[colours]
                + self.noise * rng.normal(size=(num_regions, feature_dim))
            )
            corners = rng.uniform(0, 60, size=(num_regions, 2))
            boxes = np.concatenate([corners, corners + rng.uniform(10, 40, size=(num_regions, 2))], axis=1)
            records.append(
                RegionFeatures(
                    features=features.astype(np.float32),
                    boxes=boxes.astype(np.float32),
                    image_width=100,
                    image_height=100,
                    labels=[CONCEPTS[c] for c in concepts],
                    scores=rng.uniform(0.5, 1.0, size=num_regions).astype(np.float32),
                    image_id=f"{prefix}-{index}",
                )
            )
            contents.append(list(zip(concepts.tolist(), colours.tolist(), strict=True)))
        return records, contents

    @staticmethod
    def captions(
        contents: list[list[tuple[int, int]]], per_image: int, rng: np.random.Generator
    ) -> tuple[list[str], list[int]]:
        """`per_image` captions of every image and the image index of each caption."""
        texts, text_to_image = [], []
        for image, regions in enumerate(contents):
            for _ in range(per_image):
                mentions = int(rng.integers(2, min(len(regions), 3) + 1))
                chosen = rng.choice(len(regions), size=mentions, replace=False)
                words = []
                for region in chosen:
                    concept, colour = regions[region]
                    coloured = rng.random() < 0.5
                    words.append(f"{COLOURS[colour]} {CONCEPTS[concept]}" if coloured else CONCEPTS[concept])
                template = TEMPLATES[mentions][int(rng.integers(len(TEMPLATES[mentions])))]
                texts.append(template.format(*words))
                text_to_image.append(image)
        return texts, text_to_image


# -------------------------------------------------------------------------------------------------------------
# Training and evaluation
# -------------------------------------------------------------------------------------------------------------


def build_processor(train_texts: list[str], feature_dim: int) -> VLMixerProcessor:
    tokenizer = train_tokenizer(train_texts + list(CONCEPTS) + list(COLOURS), vocab_size=256, min_frequency=1)
    extractor = VLMixerRegionFeatureExtractor(feature_dim=feature_dim, max_regions=10, detector="synthetic")
    return VLMixerProcessor(extractor, tokenizer, valp_max_length=32, tavp_max_length=48)


def config_fields(args, processor: VLMixerProcessor) -> dict[str, object]:
    return {
        "vocab_size": len(processor.tokenizer),
        "hidden_size": args.hidden_size,
        "num_hidden_layers": args.num_layers,
        "num_attention_heads": 4,
        "intermediate_size": 4 * args.hidden_size,
        "max_position_embeddings": 64,
        "visual_feature_dim": args.feature_dim,
        "image_token_id": processor.image_token_id,
        "pad_token_id": processor.tokenizer.pad_token_id,
        "contrastive_dim": args.hidden_size,
        # From scratch at BERT's initializer_range 0.02 this tiny model collapses to one output for every input
        # under the contrastive losses (stuck at ln(batch size)); a wider init and no dropout train.
        "initializer_range": 0.1,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }


def pretrain_unpaired(args, processor, train_records, train_texts, store_path: Path, workdir: Path) -> Path:
    """VALP (CMC) on the captions as a text-only corpus + TAVP on the images; returns the checkpoint folder."""
    processor.set_gallery(PatchGallery.build(train_records, feature_dtype="float32", show_progress=False))
    processor.save_pretrained(workdir / "processor")
    corpus = workdir / "captions.txt"
    corpus.write_text("\n".join(train_texts) + "\n")
    return pretrain(
        PretrainingArguments(
            output_dir=str(workdir / "pretrained"),
            processor_name_or_path=str(workdir / "processor"),
            text_corpus=str(corpus),
            region_store=str(store_path),
            config_overrides=json.dumps(config_fields(args, processor)),
            max_steps=args.pretrain_steps,
            per_device_train_batch_size=args.train_batch_size,
            learning_rate=args.learning_rate,
            warmup_ratio=0.05,
            dataloader_num_workers=0,
            logging_steps=max(1, args.pretrain_steps // 10),
            save_steps=0,
            seed=args.seed,
            use_cpu=True,
        )
    )


def finetune(args, processor, store, train_texts, train_image_ids, init: Path | None, workdir: Path):
    """Retrieval fine-tuning with `Trainer`, from the pre-trained encoder (`init`) or from scratch."""
    torch.manual_seed(args.seed)
    if init is None:
        model = VLMixerForImageTextRetrieval(VLMixerConfig(**config_fields(args, processor)))
    else:
        model = VLMixerForImageTextRetrieval.from_pretrained(init)
    dataset = datasets.Dataset.from_dict(
        {"caption": train_texts, "image_id": train_image_ids, "idx": list(range(len(train_texts)))}
    )
    training_args = TrainingArguments(
        output_dir=str(workdir / "finetuned"),
        per_device_train_batch_size=args.train_batch_size,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        warmup_steps=max(1, args.max_steps // 20),
        lr_scheduler_type="linear",
        weight_decay=0.01,
        logging_steps=max(1, args.max_steps // 6),
        save_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        use_cpu=True,
        seed=args.seed,
    )
    collator = DataCollatorForImageTextRetrieval(processor, store, seed=args.seed)
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    return trainer.model.eval()


def recall_line(name: str, recall: dict[str, float]) -> str:
    return (
        f"{name:<28} {recall['i2t_r1']:6.2f} {recall['i2t_r5']:6.2f} {recall['i2t_r10']:6.2f}   "
        f"{recall['t2i_r1']:6.2f} {recall['t2i_r5']:6.2f} {recall['t2i_r10']:6.2f}   {recall['rsum']:6.1f}"
    )


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    if args.no_progress:
        datasets.disable_progress_bars()
        hf_logging.disable_progress_bar()
    rng = np.random.default_rng(args.seed)
    world = SyntheticRetrievalWorld(args.feature_dim, args.noise, args.seed)

    train_records, train_contents = world.images(args.num_train_images, rng, "train")
    train_texts, train_index = world.captions(train_contents, args.captions_per_image, rng)
    test_records, test_contents = world.images(args.num_test_images, rng, "test")
    test_texts, text_to_image = world.captions(test_contents, args.captions_per_image, rng)
    processor = build_processor(train_texts, args.feature_dim)
    num_pairs = len(test_records) * len(test_texts)
    print(
        f"training set: {len(train_records)} images, {len(train_texts)} captions; test set: {len(test_records)} "
        f"images, {len(test_texts)} captions ({num_pairs:,} pairs); {len(CONCEPTS)} concepts x {len(COLOURS)} "
        f"colours, 2-4 regions per image, feature_dim {args.feature_dim}, vocabulary {len(processor.tokenizer)}"
    )
    print(f"e.g. {test_texts[0]!r} -> image with {test_records[0].labels}")

    train_image_ids = [train_records[image].image_id for image in train_index]
    with tempfile.TemporaryDirectory(prefix="retrieval_two_stage_") as tmp:
        workdir = Path(tmp)
        store = RegionStore.from_records(train_records, workdir / "regions", feature_dtype="float32")
        start = time.perf_counter()
        init = None
        if args.pretrain_steps:
            init = pretrain_unpaired(
                args, processor, train_records, train_texts, workdir / "regions", workdir
            )
        pretrain_seconds = time.perf_counter() - start
        start = time.perf_counter()
        model = finetune(args, processor, store, train_texts, train_image_ids, init, workdir)
        finetune_seconds = time.perf_counter() - start
    print(
        f"model: {args.num_layers} layers, hidden {args.hidden_size} "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters); on {args.threads} threads: "
        f"pre-training {args.pretrain_steps} steps (VALP + TAVP, batches of {args.train_batch_size}) in "
        f"{pretrain_seconds:.0f} s, fine-tuning {args.max_steps} steps ({args.train_batch_size} positives + "
        f"{args.train_batch_size} negatives) in {finetune_seconds:.0f} s; load average "
        f"{os.getloadavg()[0]:.2f}"
    )

    results: dict[str, RetrievalScores] = {}
    seconds: dict[str, float] = {}
    load: dict[str, float] = {}
    for name, k in (("full", None), ("two_stage", args.k)):
        start = time.perf_counter()
        results[name] = rank_image_text(
            model,
            processor,
            test_texts,
            test_records,
            text_to_image,
            k=k,
            batch_size=args.batch_size,
            show_progress=not args.no_progress,
        )
        seconds[name] = time.perf_counter() - start
        load[name] = os.getloadavg()[0]
    full, two_stage = results["full"], results["two_stage"]
    recalls = {
        "full": full.recall(),
        "two_stage": two_stage.recall(),
        "embeddings": retrieval_recall(two_stage.similarity, text_to_image),
    }

    chance_i2t = 100.0 * args.captions_per_image / len(test_texts)
    chance_t2i = 100.0 / len(test_records)
    print()
    print(f"{'':<28} {'image -> text (TR)':^20}   {'text -> image (IR)':^20}")
    print(
        f"{'method':<28} {'R@1':>6} {'R@5':>6} {'R@10':>6}   {'R@1':>6} {'R@5':>6} {'R@10':>6}   {'RSUM':>6}"
    )
    print(recall_line("embeddings only (stage 1)", recalls["embeddings"]))
    print(recall_line("full ranking", recalls["full"]))
    print(recall_line(f"two-stage k={args.k}", recalls["two_stage"]))
    print(f"chance R@1: image -> text {chance_i2t:.2f}, text -> image {chance_t2i:.2f}")
    print()
    for name, label in (("full", "full ranking"), ("two_stage", f"two-stage k={args.k}")):
        result = results[name]
        print(
            f"{label:<28} scored {result.num_scored_pairs:>9,} of {num_pairs:,} pairs "
            f"({100 * result.scored_fraction:6.2f}%) in {seconds[name]:7.1f} s "
            f"({result.num_scored_pairs / seconds[name]:,.0f} pairs/s; load average {load[name]:.2f})"
        )
    gap_i2t = recalls["full"]["i2t_r1"] - recalls["two_stage"]["i2t_r1"]
    gap_t2i = recalls["full"]["t2i_r1"] - recalls["two_stage"]["t2i_r1"]
    agree = float(
        np.mean(np.argmax(full.scores, axis=0) == np.argmax(two_stage.scores, axis=0))
    )  # same top image per caption
    print(
        f"two-stage speed-up {seconds['full'] / seconds['two_stage']:.1f}x; top-1 image identical for "
        f"{100 * agree:.2f}% of the captions"
    )
    ok = (
        abs(gap_i2t) <= TARGET_R1_GAP
        and abs(gap_t2i) <= TARGET_R1_GAP
        and two_stage.scored_fraction <= TARGET_SCORED_SHARE
    )
    print(
        f"target: R@1 within {TARGET_R1_GAP:g} point of full ranking (gaps: image -> text {gap_i2t:+.2f}, "
        f"text -> image {gap_t2i:+.2f}) while scoring <= {100 * TARGET_SCORED_SHARE:g}% of the pairs "
        f"({100 * two_stage.scored_fraction:.2f}%): {'MET' if ok else 'NOT MET'}"
    )
    return {
        "recalls": recalls,
        "seconds": seconds,
        "pretrain_seconds": pretrain_seconds,
        "finetune_seconds": finetune_seconds,
        "met": ok,
    }


if __name__ == "__main__":
    main()
