"""VLMixer pre-training (VALP + TAVP) with Accelerate, from one process to many.

    vlmixer pretrain --processor_name_or_path proc --model_name_or_path vlmixer-base \\
        --text_corpus sentences.txt --region_store regions/ --output_dir out
    accelerate launch --multi_gpu --num_processes 8 -m modeling_vlmixer.pretraining ...same options...
    vlmixer pretrain config.json   # the same options as a JSON file

This module wires the pieces together and holds no method logic: cross-modal CutMix and masking live in the
processor and collators, the losses in `VLMixerForPreTraining`. VALP batches (text corpus) and TAVP batches
(region store) alternate at `valp_per_tavp : 1`. Checkpoints (`checkpoint-<step>/`) hold the Accelerate
state (model, optimizer, scheduler, RNG, sampler) and are written under a temporary name, then renamed, so a
killed run never leaves a corrupt one; `--resume_from_checkpoint latest` continues exactly where it stopped.
"""

import json
import math
import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_scheduler

from .configuration_vlmixer import VLMixerConfig
from .modeling_vlmixer import VLMixerForPreTraining


CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_FILE = "pretraining_state.json"


@dataclass
class PretrainingArguments:
    """Options of `vlmixer pretrain`. Optimization defaults follow BERT-base VLP pre-training (Oscar/VinVL,
    which VLMixer follows): AdamW, lr 1e-4, 10% linear warm-up then linear decay, weight decay 0.01,
    gradient clipping at 1.0, 15% masking, the paper's token budgets (VALP 80, TAVP 100, set in the
    processor) and 15-shot CMC with r_cmc = r_ctx = 0.5 (processor settings)."""

    output_dir: str = field(metadata={"help": "Where checkpoints, the final model and the loss curves go."})
    processor_name_or_path: str = field(metadata={"help": "A saved VLMixerProcessor (tokenizer, extractor)."})
    text_corpus: str = field(
        metadata={"help": "Text corpus: a `datasets` folder, .txt (one per line) or .jsonl."}
    )
    gallery_path: str | None = field(
        default=None, metadata={"help": "Patch gallery (default: the processor's)."}
    )
    region_store: str | None = field(
        default=None, metadata={"help": "Region store (`datasets` folder) for TAVP."}
    )
    model_name_or_path: str | None = field(default=None, metadata={"help": "Initial VLMixer checkpoint."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "JSON of VLMixerConfig fields, to pre-train from scratch."}
    )
    max_steps: int = field(default=100_000, metadata={"help": "Optimizer steps."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "VALP sentences per device."})
    per_device_tavp_batch_size: int | None = field(default=None, metadata={"help": "Images per TAVP batch."})
    valp_per_tavp: int = field(default=1, metadata={"help": "VALP batches per TAVP batch."})
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    lr_scheduler_type: str = "linear"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str = field(default="no", metadata={"help": "no, fp16 or bf16."})
    mlm_probability: float = 0.15
    seed: int = 42
    dataloader_num_workers: int = 2
    streaming: bool = field(default=False, metadata={"help": "Stream the text corpus (.txt/.jsonl)."})
    logging_steps: int = 10
    save_steps: int = 1000
    save_total_limit: int | None = 2
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder or 'latest'."}
    )
    record_process_state: bool = field(
        default=False,
        metadata={
            "help": "Write, per process, the example ids it saw and its final parameters (for checks)."
        },
    )
    save_gallery: bool = field(default=False, metadata={"help": "Copy the gallery into the final processor."})
    use_cpu: bool = field(
        default=False, metadata={"help": "Train on the CPU even if an accelerator is present."}
    )


def load_text_corpus(path: str, streaming: bool = False):
    """The text corpus as a `datasets` dataset with a `text` column and an `idx` column of example ids."""
    import datasets

    if os.path.isdir(path):
        dataset = datasets.load_from_disk(path)
    elif path.endswith((".jsonl", ".json")):
        dataset = datasets.load_dataset("json", data_files=path, split="train", streaming=streaming)
    elif path.endswith(".txt"):
        dataset = datasets.load_dataset("text", data_files=path, split="train", streaming=streaming)
        dataset = dataset.filter(lambda example: bool(example["text"].strip()))
    else:
        raise ValueError(f"Text corpus {path}: expected a `datasets` folder, a .txt or a .jsonl file.")
    if "text" not in dataset.column_names:
        raise ValueError(f"Text corpus {path} has no `text` column (columns: {dataset.column_names}).")
    if streaming:
        return dataset.map(lambda example, index: {"idx": index}, with_indices=True)
    if "idx" not in dataset.column_names:
        dataset = dataset.add_column("idx", list(range(len(dataset))))
    return dataset


def load_region_store(path: str):
    """The region store (a `RegionStore` folder, or one `datasets` folder of region rows) as a `datasets`
    dataset of region rows with an `idx` column."""
    import datasets

    from processing.region_store import REGION_STORE_CONFIG_NAME, RegionStore

    if not os.path.isdir(path):
        raise ValueError(f"Region store {path} is not a folder written by the region-store readers.")
    if os.path.isfile(os.path.join(path, REGION_STORE_CONFIG_NAME)):
        dataset = RegionStore.load(path).dataset
    else:  # a single `datasets` folder of region rows
        dataset = datasets.load_from_disk(path)
    if "idx" not in dataset.column_names:
        dataset = dataset.add_column("idx", list(range(len(dataset))))
    return dataset


def _with_ids(collator):
    """Wraps a collator so the batch also carries the example ids (`example_ids`), for bookkeeping."""

    def collate(examples):
        batch = collator(examples)
        batch["example_ids"] = torch.tensor([int(example["idx"]) for example in examples])
        return batch

    return collate


def _batches(accelerator: Accelerator, loader: DataLoader, collator, start: int) -> Iterator[dict]:
    """Endless batches of `loader` starting after `start` consumed ones (epochs re-shuffled by the seeded
    sampler; the collator's per-batch seeds include the epoch)."""
    length = len(loader) if hasattr(loader, "__len__") else None
    epoch, skip = divmod(start, length) if length else (0, start)
    while True:
        collator.epoch = epoch
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        iterator = accelerator.skip_first_batches(loader, skip) if skip else loader
        yielded = False
        for batch in iterator:
            yielded = True
            yield batch
        if not yielded and not skip:
            raise ValueError("A pre-training data set yields no batch: it is smaller than one batch.")
        epoch, skip = epoch + 1, 0


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in output_dir.glob("checkpoint-*"):
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def plot_loss_curves(history: list[dict], path: Path) -> None:
    """Writes the running losses (`mlm_loss`, `contrastive_loss`, `tag_loss`, `loss`) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for key in ("loss", "mlm_loss", "contrastive_loss", "tag_loss"):
        points = [(entry["step"], entry[key]) for entry in history if entry.get(key) is not None]
        if points:
            axis.plot(*zip(*points, strict=True), label=key)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_title("VLMixer pre-training")
    axis.legend()
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)


def use_cpu(requested: bool) -> bool:
    """Whether Accelerate should run on the CPU: when asked, or when launched on several processes on a
    machine without CUDA (then the processes talk over gloo instead of each running alone)."""
    return requested or (not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1)


def pretrain(args: PretrainingArguments) -> Path:
    """Runs pre-training and returns the output folder (final model + processor + loss curves)."""
    from processing import PatchGallery, VLMixerProcessor
    from processing.collators import DataCollatorForTAVP, DataCollatorForVALP

    output_dir = Path(args.output_dir)
    accelerator = Accelerator(
        cpu=use_cpu(args.use_cpu),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        # TAVP batches do not use the contrastive projection.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    set_seed(args.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    gallery = PatchGallery.from_pretrained(args.gallery_path) if args.gallery_path else None
    processor = VLMixerProcessor.from_pretrained(args.processor_name_or_path, gallery=gallery)
    if processor.gallery is None:
        raise ValueError(
            "VALP needs a patch gallery: pass --gallery_path or a processor saved with its gallery."
        )
    if args.model_name_or_path:
        model = VLMixerForPreTraining.from_pretrained(args.model_name_or_path)
    else:
        overrides = json.loads(args.config_overrides) if args.config_overrides else {}
        overrides.setdefault("vocab_size", len(processor.tokenizer))
        overrides.setdefault("image_token_id", processor.image_token_id)
        overrides.setdefault("visual_feature_dim", processor.feature_extractor.feature_dim)
        model = VLMixerForPreTraining(VLMixerConfig(**overrides))
    processor.check_model_config(model.config)

    valp_collator = DataCollatorForVALP(processor, args.mlm_probability, seed=args.seed)
    text_corpus = load_text_corpus(args.text_corpus, streaming=args.streaming)
    # Loaders draw their worker seeds from their own generator: starting an iterator (as resuming does)
    # must not consume the global RNG that dropout uses.
    valp_loader = DataLoader(
        text_corpus,
        batch_size=args.per_device_train_batch_size,
        shuffle=not args.streaming,
        drop_last=True,
        collate_fn=_with_ids(valp_collator),
        num_workers=args.dataloader_num_workers,
        generator=torch.Generator().manual_seed(args.seed),
    )
    tavp_loader = tavp_collator = None
    if args.region_store:
        tavp_collator = DataCollatorForTAVP(processor, args.mlm_probability, seed=args.seed)
        tavp_loader = DataLoader(
            load_region_store(args.region_store),
            batch_size=args.per_device_tavp_batch_size or args.per_device_train_batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=_with_ids(tavp_collator),
            num_workers=args.dataloader_num_workers,
            generator=torch.Generator().manual_seed(args.seed + 1),
        )

    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": args.weight_decay,
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2), eps=args.adam_epsilon
    )
    # A prepared scheduler steps once per process per optimizer step.
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=math.ceil(args.warmup_ratio * args.max_steps) * accelerator.num_processes,
        num_training_steps=args.max_steps * accelerator.num_processes,
    )
    model, optimizer, scheduler, valp_loader = accelerator.prepare(model, optimizer, scheduler, valp_loader)
    if tavp_loader is not None:
        tavp_loader = accelerator.prepare(tavp_loader)

    state = {"step": 0, "micro_batches": 0, "valp_batches": 0, "tavp_batches": 0, "history": []}
    resume = args.resume_from_checkpoint
    if resume == "latest":
        found = _checkpoints(output_dir)
        resume = str(found[-1][1]) if found else None
    if resume:
        accelerator.load_state(resume)
        state = json.loads((Path(resume) / STATE_FILE).read_text())
        accelerator.print(f"resumed from {resume} at step {state['step']}")

    valp_batches = _batches(accelerator, valp_loader, valp_collator, state["valp_batches"])
    tavp_batches = (
        _batches(accelerator, tavp_loader, tavp_collator, state["tavp_batches"])
        if tavp_loader is not None
        else None
    )
    seen = {"valp": [], "tavp": []}
    running: dict[str, list[float]] = {}
    progress = tqdm(
        total=args.max_steps,
        initial=state["step"],
        disable=not accelerator.is_local_main_process,
        desc="pre-training",
    )
    model.train()
    while state["step"] < args.max_steps:
        is_tavp = (
            tavp_batches is not None
            and state["micro_batches"] % (args.valp_per_tavp + 1) == args.valp_per_tavp
        )
        batch = next(tavp_batches if is_tavp else valp_batches)
        state["tavp_batches" if is_tavp else "valp_batches"] += 1
        state["micro_batches"] += 1
        example_ids = batch.pop("example_ids")
        if args.record_process_state:
            seen["tavp" if is_tavp else "valp"] += example_ids.tolist()
        with accelerator.accumulate(model):
            outputs = model(**batch)
            accelerator.backward(outputs.loss)
            if accelerator.sync_gradients and args.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        for key in ("loss", "mlm_loss", "contrastive_loss", "tag_loss"):
            value = getattr(outputs, key)
            if value is not None:
                running.setdefault(key, []).append(float(value.detach()))
        if not accelerator.sync_gradients:
            continue
        state["step"] += 1
        progress.update(1)
        if state["step"] % args.logging_steps == 0 or state["step"] == args.max_steps:
            entry = {"step": state["step"], "lr": scheduler.get_last_lr()[0]}
            entry.update({key: sum(values) / len(values) for key, values in running.items()})
            state["history"].append(entry)
            progress.set_postfix({k: f"{v:.3f}" for k, v in entry.items() if k.endswith("loss")})
            running = {}
        if args.save_steps and state["step"] % args.save_steps == 0 and state["step"] < args.max_steps:
            save_checkpoint(accelerator, output_dir, state, args.save_total_limit)
    progress.close()

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    if args.record_process_state:
        rank = accelerator.process_index
        (output_dir / f"seen_examples-rank{rank}.json").write_text(json.dumps(seen))
        parameters = {name: p.detach().cpu().clone() for name, p in unwrapped.named_parameters()}
        torch.save(parameters, output_dir / f"parameters-rank{rank}.pt")
    if accelerator.is_main_process:
        _write_final(unwrapped, processor, output_dir, args, state)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return output_dir


def save_checkpoint(
    accelerator: Accelerator, output_dir: Path, state: dict, save_total_limit: int | None
) -> Path:
    """Saves the Accelerate state under a temporary name, then renames it to `checkpoint-<step>`."""
    final = output_dir / f"checkpoint-{state['step']}"
    tmp = output_dir / f".checkpoint-{state['step']}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if save_total_limit:
            for _, old in _checkpoints(output_dir)[:-save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _write_final(model, processor, output_dir: Path, args: PretrainingArguments, state: dict) -> None:
    """Writes model, processor, state and loss curves into a temporary folder, then moves each file into
    `output_dir` (each file appears complete or not at all)."""
    tmp = output_dir / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp, save_gallery=args.save_gallery)
    (tmp / STATE_FILE).write_text(json.dumps(state))
    (tmp / "pretraining_args.json").write_text(json.dumps(asdict(args), indent=2))
    if state["history"]:
        plot_loss_curves(state["history"], tmp / "loss_curves.png")
    for path in sorted(tmp.rglob("*"), key=lambda p: len(p.parts)):
        target = output_dir / path.relative_to(tmp)
        if path.is_dir():
            target.mkdir(exist_ok=True)
        else:
            os.replace(path, target)
    shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> PretrainingArguments:
    parser = HfArgumentParser(PretrainingArguments)
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 1 and argv[0].endswith(".json"):
        (args,) = parser.parse_json_file(argv[0])
    else:
        (args,) = parser.parse_args_into_dataclasses(argv)
    return args


def main(argv: list[str] | None = None) -> None:
    output_dir = pretrain(parse_args(argv))
    print(f"pre-trained model written to {output_dir}")


if __name__ == "__main__":
    main()
