"""Training-step throughput of `VLMixerModel` against transformers' `BertModel` and `VisualBertModel`.

Every model gets the same work: one batch of text tokens plus region slots, a forward pass in train mode
(dropout probabilities set to 0 so no model draws random numbers the others do not), the loss
`last_hidden_state.float().pow(2).mean() + pooler_output.float().pow(2).mean()`, `loss.backward()`, and
the gradients are zeroed between steps.

- VLMixer: `input_ids` (B, T+R) with `config.image_token_id` in the R appended region slots,
  `visual_features` (B, R, F), `visual_boxes` (B, R, 4), segments 0/1, positions `0..T-1` for the text and
  one shared position `T` for every region. Its input validation (`check_visual_inputs`) runs inside the
  forward and is timed with it: nothing is bypassed.
- Bert: `input_ids` (B, T+R) of random word pieces; the same mask and segments; same encoder size.
- VisualBert: `input_ids` (B, T), `visual_embeds` (B, R, F), `visual_attention_mask`, `visual_token_type_ids`;
  same encoder size, `visual_embedding_dim = F`.

The models are stepped round-robin (the starting model rotates every repetition) so that drift on a shared
machine hits them alike; the report gives median and mean milliseconds per step and the ratios of medians.
VisualBert has no SDPA support in transformers 5.x (it always runs eager attention), so unless the
requested implementation is `eager`, VLMixer and Bert are also timed with eager attention to give an
apples-to-apples row against VisualBert.

Usage:
    python benchmarks/model_throughput.py                 # BERT-base, 80 text + 50 regions, batch 8
    python benchmarks/model_throughput.py --tiny          # smoke run: hidden 64, 2 layers
    python benchmarks/model_throughput.py --steps 10 --warmup 2 --threads 2 --attn_implementation sdpa
    python benchmarks/model_throughput.py --profile       # plus a torch.profiler table of one VLMixer step
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import BertConfig, BertModel, VisualBertConfig, VisualBertModel

from modeling_vlmixer import VLMixerConfig, VLMixerModel


TARGET_BERT = 1.05
TARGET_VISUAL_BERT = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--text_len", type=int, default=80, help="text tokens per sequence")
    parser.add_argument("--num_regions", type=int, default=50, help="visual slots (regions) per sequence")
    parser.add_argument("--feature_dim", type=int, default=2048, help="region feature width")
    parser.add_argument("--hidden_size", type=int, default=768)
    parser.add_argument("--num_layers", type=int, default=12)
    parser.add_argument("--num_heads", type=int, default=12)
    parser.add_argument("--intermediate_size", type=int, default=3072)
    parser.add_argument(
        "--tiny", action="store_true", help="smoke run: hidden 64, 2 layers, 4 heads, ffn 256"
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per model")
    parser.add_argument(
        "--attn_implementation",
        default="sdpa",
        choices=["sdpa", "eager"],
        help="attention implementation requested for all three models (VisualBert supports only eager)",
    )
    parser.add_argument(
        "--eager_row",
        default="auto",
        choices=["auto", "always", "never"],
        help="also time VLMixer and Bert with eager attention: auto = when some model could not use the "
        "requested implementation",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        help="torch.set_num_threads (default: all cores available to this process)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--profile", action="store_true", help="print a torch.profiler table of one VLMixer step"
    )
    args = parser.parse_args(argv)
    if args.tiny:
        args.hidden_size, args.num_layers, args.num_heads, args.intermediate_size = 64, 2, 4, 256
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    return args


def size_kwargs(args: argparse.Namespace) -> dict:
    """Encoder size shared by the three configs; dropout 0 so train mode draws no random numbers."""
    return {
        "hidden_size": args.hidden_size,
        "num_hidden_layers": args.num_layers,
        "num_attention_heads": args.num_heads,
        "intermediate_size": args.intermediate_size,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }


def build_model(model_cls: type, config, attn_implementation: str) -> tuple[nn.Module, str]:
    """Instantiates `model_cls` with the requested attention, falling back to eager if unsupported.

    Returns the model in train mode and a note on the implementation it actually uses. Each model gets its
    own copy of `config`: `_from_config` writes the implementation into the config, and the attention
    layers read it from there at every forward, so a shared config would switch earlier models too.
    """
    config = copy.deepcopy(config)
    try:
        model = model_cls._from_config(config, attn_implementation=attn_implementation)
        note = ""
    except ValueError as error:
        if attn_implementation == "eager":
            raise
        config = copy.deepcopy(config)
        model = model_cls._from_config(config, attn_implementation="eager")
        note = f"{attn_implementation} unsupported ({str(error).split('.')[0]}); fell back to eager"
    model.train()
    return model, note


def make_inputs(args: argparse.Namespace, vocab_size: int, image_token_id: int) -> dict[str, dict]:
    """The same batch for every model, in each model's own input format."""
    generator = torch.Generator().manual_seed(args.seed)
    batch, text_len, regions = args.batch_size, args.text_len, args.num_regions
    # Random word pieces away from the special tokens ([PAD]=0, [IMG]=1, [unused*], [CLS], [SEP], ...).
    text_ids = torch.randint(1000, vocab_size, (batch, text_len), generator=generator)
    features = torch.randn(batch, regions, args.feature_dim, generator=generator).relu()
    xy1 = torch.rand(batch, regions, 2, generator=generator) * 0.9
    xy2 = xy1 + torch.rand(batch, regions, 2, generator=generator) * (1 - xy1)
    boxes = torch.cat([xy1, xy2], dim=-1).clamp(0, 1)

    seq_len = text_len + regions
    attention_mask = torch.ones(batch, seq_len, dtype=torch.long)
    token_type_ids = torch.cat(
        [torch.zeros(batch, text_len, dtype=torch.long), torch.ones(batch, regions, dtype=torch.long)], dim=1
    )
    position_ids = torch.cat(
        [torch.arange(text_len), torch.full((regions,), text_len, dtype=torch.long)]
    ).expand(batch, -1)

    vlmixer = {
        "input_ids": torch.cat(
            [text_ids, torch.full((batch, regions), image_token_id, dtype=torch.long)], dim=1
        ),
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
        "position_ids": position_ids,
        "visual_features": features,
        "visual_boxes": boxes,
    }
    bert = {
        "input_ids": torch.cat(
            [text_ids, torch.randint(1000, vocab_size, (batch, regions), generator=generator)], dim=1
        ),
        "attention_mask": attention_mask,
        "token_type_ids": token_type_ids,
    }
    visual_bert = {
        "input_ids": text_ids,
        "attention_mask": torch.ones(batch, text_len, dtype=torch.long),
        "token_type_ids": torch.zeros(batch, text_len, dtype=torch.long),
        "visual_embeds": features,
        "visual_attention_mask": torch.ones(batch, regions, dtype=torch.long),
        "visual_token_type_ids": torch.ones(batch, regions, dtype=torch.long),
    }
    return {"vlmixer": vlmixer, "bert": bert, "visual_bert": visual_bert}


class SectionTimer:
    """Accumulates wall time of a bound method, installed on one model instance (the class is untouched)."""

    def __init__(self, owner: nn.Module, name: str):
        self.total = 0.0
        self.enabled = False
        method = getattr(owner, name)

        def timed(*args, **kwargs):
            if not self.enabled:
                return method(*args, **kwargs)
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - start

        setattr(owner, name, timed)


@dataclass
class Entry:
    label: str
    model: nn.Module
    inputs: dict
    note: str = ""
    times_ms: list[float] = field(default_factory=list)
    sections: dict[str, SectionTimer] = field(default_factory=dict)

    @property
    def attn(self) -> str:
        return self.model.config._attn_implementation

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def median(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times_ms)


def train_step(model: nn.Module, inputs: dict) -> float:
    """One forward + backward; returns its wall time in milliseconds (zeroing the gradients is not timed)."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    outputs = model(**inputs)
    loss = outputs.last_hidden_state.float().pow(2).mean() + outputs.pooler_output.float().pow(2).mean()
    loss.backward()
    return (time.perf_counter() - start) * 1000.0


def run_round_robin(entries: list[Entry], warmup: int, steps: int, log: Callable[[str], None]) -> None:
    for repetition in range(warmup + steps):
        timed = repetition >= warmup
        shift = repetition % len(entries)
        for entry in entries[shift:] + entries[:shift]:
            for section in entry.sections.values():
                section.enabled = timed
            elapsed = train_step(entry.model, entry.inputs)
            if timed:
                entry.times_ms.append(elapsed)
        kind = "timed" if timed else "warm-up"
        log(f"  rep {repetition + 1}/{warmup + steps} ({kind}) done")


def profile_vlmixer(entry: Entry, rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        entry.model.zero_grad(set_to_none=True)
        with record_function("vlmixer_forward"):
            outputs = entry.model(**entry.inputs)
            loss = (
                outputs.last_hidden_state.float().pow(2).mean() + outputs.pooler_output.float().pow(2).mean()
            )
        with record_function("vlmixer_backward"):
            loss.backward()
    print(f"\ntorch.profiler, one VLMixer step ({entry.label}), top {rows} ops by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    sizes = size_kwargs(args)
    vlmixer_config = VLMixerConfig(visual_feature_dim=args.feature_dim, **sizes)
    bert_config = BertConfig(**sizes)
    visual_bert_config = VisualBertConfig(visual_embedding_dim=args.feature_dim, **sizes)
    inputs = make_inputs(args, vlmixer_config.vocab_size, vlmixer_config.image_token_id)

    requested = args.attn_implementation
    entries: list[Entry] = []

    def add(label: str, model_cls: type, config, key: str, attn: str) -> Entry:
        torch.manual_seed(args.seed)
        model, note = build_model(model_cls, config, attn)
        entry = Entry(label=label, model=model, inputs=inputs[key], note=note)
        if isinstance(model, VLMixerModel):
            # Time the input validation and the embedding of the inputs (forward part) inside the step.
            entry.sections["check_visual_inputs"] = SectionTimer(model, "check_visual_inputs")
            entry.sections["embed_inputs"] = SectionTimer(model, "embed_inputs")
        entries.append(entry)
        return entry

    vlmixer = add(f"VLMixer ({requested})", VLMixerModel, vlmixer_config, "vlmixer", requested)
    bert = add(f"Bert ({requested})", BertModel, bert_config, "bert", requested)
    visual_bert_label = "VisualBert" + (f" ({requested} requested)" if requested != "eager" else " (eager)")
    visual_bert = add(visual_bert_label, VisualBertModel, visual_bert_config, "visual_bert", requested)
    fell_back = any(entry.attn != requested for entry in entries)
    vlmixer_eager = bert_eager = None
    if requested != "eager" and (args.eager_row == "always" or (args.eager_row == "auto" and fell_back)):
        vlmixer_eager = add("VLMixer (eager)", VLMixerModel, vlmixer_config, "vlmixer", "eager")
        bert_eager = add("Bert (eager)", BertModel, bert_config, "bert", "eager")

    seq_len = args.text_len + args.num_regions
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; batch {args.batch_size}, "
        f"{args.text_len} text + {args.num_regions} visual tokens (= {seq_len}), region features "
        f"{args.feature_dim}-d; hidden {args.hidden_size}, layers {args.num_layers}, heads {args.num_heads}, "
        f"intermediate {args.intermediate_size}; dropout 0, train mode; warm-up {args.warmup}, "
        f"timed steps {args.steps} per model, round-robin"
    )
    print("\nParameters and attention implementation actually used (model.config._attn_implementation):")
    for entry in entries:
        note = f"  [{entry.note}]" if entry.note else ""
        print(f"  {entry.label:<28} params {entry.params:>12,}  attn={entry.attn}{note}")

    print("\nRunning ...", flush=True)
    run_round_robin(entries, args.warmup, args.steps, log=lambda message: print(message, flush=True))

    print("\nforward+backward ms/step")
    header = f"  {'model':<28} {'attn':<6} {'median':>9} {'mean':>9} {'min':>9} {'max':>9}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    for entry in entries:
        print(
            f"  {entry.label:<28} {entry.attn:<6} {entry.median:>9.1f} {entry.mean:>9.1f} "
            f"{min(entry.times_ms):>9.1f} {max(entry.times_ms):>9.1f}"
        )
    for entry in entries:
        for name, section in entry.sections.items():
            per_step = section.total * 1000.0 / args.steps
            print(
                f"  {entry.label}: {name} {per_step:.2f} ms/step (forward only) = "
                f"{100.0 * per_step / entry.mean:.2f}% of the mean step"
            )

    def ratio(a: Entry, b: Entry) -> str:
        # Steps of one repetition ran back to back, so the per-repetition ratio cancels slow drift.
        paired = statistics.median(x / y for x, y in zip(a.times_ms, b.times_ms, strict=True))
        return f"{a.median / b.median:.3f}x   (median of per-repetition ratios {paired:.3f}x)"

    rows = [
        (f"VLMixer/Bert        both {vlmixer.attn}", ratio(vlmixer, bert)),
        (
            f"VLMixer/VisualBert  {vlmixer.attn} vs {visual_bert.attn}"
            + (" (mixed)" if vlmixer.attn != visual_bert.attn else ""),
            ratio(vlmixer, visual_bert),
        ),
    ]
    if vlmixer_eager is not None:
        rows.append(("VLMixer/Bert        both eager", ratio(vlmixer_eager, bert_eager)))
        rows.append(("VLMixer/VisualBert  both eager (apples-to-apples)", ratio(vlmixer_eager, visual_bert)))
    print("\nRatios of medians:")
    for label, value in rows:
        print(f"  {label:<50} {value}")

    # The headline pairs models that ran the same attention implementation.
    same_impl_visual = vlmixer if vlmixer.attn == visual_bert.attn else vlmixer_eager
    vb_note = ""
    if same_impl_visual is None:
        same_impl_visual, vb_note = vlmixer, f" [mixed attention: {vlmixer.attn} vs {visual_bert.attn}]"
    r_bert = vlmixer.median / bert.median
    r_visual = same_impl_visual.median / visual_bert.median
    verdict = "PASS" if r_bert <= TARGET_BERT and r_visual <= TARGET_VISUAL_BERT else "FAIL"
    print(
        f"\nVLMixer/Bert = {r_bert:.3f}x ({vlmixer.attn})  VLMixer/VisualBert = {r_visual:.3f}x "
        f"({same_impl_visual.attn}){vb_note}  (targets <= {TARGET_BERT}, <= {TARGET_VISUAL_BERT})  {verdict}"
    )

    if args.profile:
        for section in vlmixer.sections.values():
            section.enabled = False
        profile_vlmixer(vlmixer)


if __name__ == "__main__":
    main()
