import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForPreTraining, AutoProcessor

from modeling_vlmixer import VLMixerForPreTraining
from modeling_vlmixer.pretraining import PretrainingArguments, pretrain


REPO = Path(__file__).resolve().parents[2]


def test_losses_match_an_independent_computation(tiny_config, tiny_inputs):
    """mlm_loss and contrastive_loss recomputed in the test from the logits and the [CLS] embeddings."""
    torch.manual_seed(0)
    model = VLMixerForPreTraining(tiny_config).eval()
    mixed = tiny_inputs["input_ids"]
    text = mixed.clone()
    text[0, 2:4] = torch.tensor([40, 41])  # the word pieces the patch replaced
    text[1, 4:7] = torch.tensor([50, 51, 52])
    labels = torch.full_like(mixed, -100)
    labels[0, 2:4], labels[1, 4:7], labels[2, 2] = text[0, 2:4], text[1, 4:7], 77
    outputs = model(**tiny_inputs, text_input_ids=text, labels=labels)

    # MLM: mean over labelled positions of -log softmax(logits)[label].
    log_probs = torch.log_softmax(outputs.logits, dim=-1)
    positions = (labels != -100).nonzero().tolist()
    expected_mlm = -sum(log_probs[b, i, labels[b, i]] for b, i in positions) / len(positions)
    torch.testing.assert_close(outputs.mlm_loss, expected_mlm)

    # Contrastive: the embeddings are the projections of separate forward passes of each view.
    mixed_pooled = model.vlmixer(**tiny_inputs).pooler_output
    text_inputs = {k: v for k, v in tiny_inputs.items() if not k.startswith("visual")}
    text_pooled = model.vlmixer(**{**text_inputs, "input_ids": text}).pooler_output
    mixed_embeds = model.contrastive_projection(mixed_pooled)
    text_embeds = model.contrastive_projection(text_pooled)
    torch.testing.assert_close(outputs.mixed_embeds, mixed_embeds, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs.text_embeds, text_embeds, atol=1e-5, rtol=1e-5)
    t = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    s = mixed_embeds / mixed_embeds.norm(dim=-1, keepdim=True)
    expected_cl = 0.0
    for m in range(3):
        similarities = [float(t[m] @ s[other]) / 0.1 for other in range(3)]
        expected_cl += -(similarities[m] - np.log(np.sum(np.exp(similarities))))
    expected_cl /= 3
    assert abs(float(outputs.contrastive_loss) - expected_cl) < 1e-5
    torch.testing.assert_close(outputs.loss, outputs.mlm_loss + outputs.contrastive_loss)

    tag = model(**tiny_inputs, tag_labels=labels)
    assert tag.mlm_loss is None and tag.contrastive_loss is None
    torch.testing.assert_close(tag.tag_loss, expected_mlm)
    with pytest.raises(ValueError, match="either VALP"):
        model(**tiny_inputs, text_input_ids=text, tag_labels=labels)
    with pytest.raises(ValueError, match="must not contain visual slots"):
        model(**tiny_inputs, text_input_ids=mixed)


def _args(world, output_dir, **overrides) -> PretrainingArguments:
    root = world["root"]
    values = dict(
        output_dir=str(output_dir),
        processor_name_or_path=str(root / "processor"),
        text_corpus=str(root / "sentences.txt"),
        region_store=str(root / "regions"),
        model_name_or_path=str(root / "init"),
        max_steps=6,
        per_device_train_batch_size=8,
        per_device_tavp_batch_size=4,
        learning_rate=1e-3,
        warmup_ratio=0.2,
        logging_steps=1,
        save_steps=3,
        dataloader_num_workers=0,
        seed=7,
    )
    values.update(overrides)
    return PretrainingArguments(**values)


def _cli(args: PretrainingArguments) -> list[str]:
    argv = []
    for key, value in vars(args).items():
        if value is None or value is False:
            continue
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return argv


def test_pretrain_end_to_end(tmp_path, pretraining_world):
    output_dir = pretrain(_args(pretraining_world, tmp_path / "run"))
    state = json.loads((output_dir / "pretraining_state.json").read_text())
    assert state["step"] == 6 and state["valp_batches"] == 3 and state["tavp_batches"] == 3
    kinds = {key for entry in state["history"] for key in entry if key.endswith("loss")}
    assert kinds == {"loss", "mlm_loss", "contrastive_loss", "tag_loss"}
    with Image.open(output_dir / "loss_curves.png") as image:
        image.verify()
    assert [p.name for p in output_dir.glob("checkpoint-*")] == ["checkpoint-3"]
    assert not list(output_dir.glob(".*tmp*"))
    model = AutoModelForPreTraining.from_pretrained(output_dir)
    assert isinstance(model, VLMixerForPreTraining)
    assert AutoModel.from_pretrained(output_dir).config.visual_feature_dim == 16
    processor = AutoProcessor.from_pretrained(output_dir)
    assert processor.image_token_id == model.config.image_token_id


def _final_parameters(output_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(output_dir / "model.safetensors"))


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, pretraining_world):
    reference = _final_parameters(
        pretrain(_args(pretraining_world, tmp_path / "reference", max_steps=8, save_steps=2))
    )

    killed_dir = tmp_path / "killed"
    args = _args(pretraining_world, killed_dir, max_steps=8, save_steps=2)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "modeling_vlmixer.pretraining", *_cli(args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (killed_dir / "checkpoint-4").exists():
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed_dir / "checkpoint-4").exists() and not (killed_dir / "model.safetensors").exists()
    # Only complete checkpoints carry their state file; a temporary one may remain and is never resumed.
    for checkpoint in killed_dir.glob("checkpoint-*"):
        assert (checkpoint / "pretraining_state.json").is_file()

    pretrain(_args(pretraining_world, killed_dir, max_steps=8, save_steps=2, resume_from_checkpoint="latest"))
    resumed = _final_parameters(killed_dir)
    assert resumed.keys() == reference.keys()
    for name in reference:
        assert (resumed[name] - reference[name]).abs().max() <= 1e-6, name


def test_distributed_two_processes(tmp_path, pretraining_world):
    """`accelerate launch --multi_gpu --num_processes 2`: two CPU processes over gloo."""
    output_dir = tmp_path / "ddp"
    args = _args(
        pretraining_world,
        output_dir,
        max_steps=3,
        save_steps=0,
        record_process_state=True,
        per_device_train_batch_size=4,
        per_device_tavp_batch_size=2,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "modeling_vlmixer.pretraining",
        *_cli(args),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    seen = [json.loads((output_dir / f"seen_examples-rank{rank}.json").read_text()) for rank in (0, 1)]
    for kind in ("valp", "tavp"):
        assert seen[0][kind] and seen[1][kind]
        assert not set(seen[0][kind]) & set(seen[1][kind]), f"{kind} shards overlap"
    parameters = [torch.load(output_dir / f"parameters-rank{rank}.pt") for rank in (0, 1)]
    for name in parameters[0]:
        assert torch.equal(parameters[0][name], parameters[1][name]), name


def _slot_accuracy(model, processor, corpus, seed: int = 123, per_concept: int = 10) -> float:
    """Accuracy of predicting, at a visual slot holding a held-out patch (fresh features, never in the
    gallery), the concept word the patch stands for, among the corpus concepts (chance = 1 / #concepts)."""
    rng = np.random.default_rng(seed)
    tokenizer = processor.tokenizer
    concept_ids = [tokenizer.convert_tokens_to_ids(c) for c in corpus.concepts]
    correct = total = 0
    model.eval()
    for index, concept in enumerate(corpus.concepts):
        features, boxes = zip(*(corpus.region(concept, rng) for _ in range(per_concept)), strict=True)
        text = tokenizer([f"a {concept} near the grass ."] * per_concept, return_tensors="pt")
        input_ids = text["input_ids"].clone()
        input_ids[:, 2] = processor.image_token_id
        with torch.no_grad():
            logits = model(
                input_ids=input_ids,
                attention_mask=text["attention_mask"],
                visual_features=torch.tensor(np.stack(features))[:, None],
                visual_boxes=torch.tensor(np.stack(boxes))[:, None],
            ).logits[:, 2, concept_ids]
        correct += int((logits.argmax(-1) == index).sum())
        total += per_concept
    return correct / total


def test_pretraining_learns_cross_modal_alignment(tmp_path, pretraining_world):
    """From chance to well above it: the replaced word is recovered from a held-out patch at its slot."""
    corpus, processor = pretraining_world["corpus"], pretraining_world["processor"]
    before = _slot_accuracy(
        VLMixerForPreTraining.from_pretrained(pretraining_world["root"] / "init"), processor, corpus
    )
    output_dir = pretrain(
        _args(
            pretraining_world,
            tmp_path / "learn",
            max_steps=200,
            save_steps=0,
            per_device_train_batch_size=16,
            learning_rate=5e-3,
            warmup_ratio=0.05,
        )
    )
    after = _slot_accuracy(VLMixerForPreTraining.from_pretrained(output_dir), processor, corpus)
    chance = 1 / len(corpus.concepts)
    print(f"slot accuracy before {before:.3f}, after {after:.3f}, chance {chance:.3f}")
    assert before < 2 * chance
    assert after >= 0.6


def test_contrastive_objective_separates_the_sentences(pretraining_world):
    """Optimizing L_cl alone on one VALP batch pulls each T^mask to its own S^mask (dropout off)."""
    from processing.collators import DataCollatorForVALP

    corpus, processor = pretraining_world["corpus"], pretraining_world["processor"]
    batch = DataCollatorForVALP(processor, seed=0)(
        [{"text": s, "idx": i} for i, s in enumerate(corpus.sentences[:16])]
    )
    model = VLMixerForPreTraining.from_pretrained(
        pretraining_world["root"] / "init", hidden_dropout_prob=0.0
    ).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = model(**batch).contrastive_loss
        first = float(loss) if first is None else first
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert abs(first - np.log(16)) < 0.05  # at initialization the [CLS] states are all alike
    assert float(model(**batch).contrastive_loss) < 1.0
