import numpy as np
import pytest
import torch

from modeling_vlmixer import VLMixerForPreTraining
from processing.collators import DataCollatorForTAVP, DataCollatorForVALP, plan_masking


def _examples(sentences):
    return [{"text": text, "idx": index} for index, text in enumerate(sentences)]


def test_valp_batch_alignment_labels_and_visual_rows(pretraining_world):
    processor = pretraining_world["processor"]
    collator = DataCollatorForVALP(processor, seed=3)
    examples = _examples(pretraining_world["corpus"].sentences[:16])
    batch = collator(examples)
    mixed, text, labels = batch["input_ids"], batch["text_input_ids"], batch["labels"]
    assert mixed.shape == text.shape == labels.shape
    image_token_id, mask_id = processor.image_token_id, processor.tokenizer.mask_token_id
    slots = mixed == image_token_id
    assert slots.any(), "r_cmc = 0.5 over 16 sentences with two concepts each: some slot is expected"
    assert not (text == image_token_id).any()
    assert (labels[slots] != -100).all()  # every visual slot predicts the word it replaced
    # The unmasked text view T is recovered from the processor: labels hold T's word pieces.
    plain = processor(text=[e["text"] for e in examples], cutmix=True, seed=0, return_tensors="pt")
    assert torch.equal(labels[labels != -100], plain["text_input_ids"][labels != -100])
    # Visual rows line up with the remaining slots (the model checks counts); masked views agree on [MASK].
    assert batch["visual_features"].shape[1] == int(slots.sum(1).max())
    assert torch.equal(mixed == mask_id, text == mask_id)
    assert (labels[(mixed == mask_id)] != -100).all()
    # Same idx -> same batch; another seed differs.
    again = collator(examples)
    assert all(torch.equal(batch[key], again[key]) for key in batch)
    other = DataCollatorForVALP(processor, seed=4)(examples)
    assert not torch.equal(other["input_ids"], batch["input_ids"])

    model = VLMixerForPreTraining(pretraining_world["config"]).eval()
    outputs = model(**batch)
    assert torch.isfinite(outputs.loss) and outputs.contrastive_loss is not None


def test_masking_rates():
    rng = np.random.default_rng(0)
    eligible = np.ones((400, 250), dtype=bool)
    eligible[:, :50] = False
    plan = plan_masking(eligible, rng, np.arange(1000, 2000))
    chosen = plan.chosen[eligible]
    assert not plan.chosen[~eligible].any()
    assert abs(chosen.mean() - 0.15) < 0.005
    assert abs(plan.to_mask.sum() / plan.chosen.sum() - 0.8) < 0.01
    assert abs(plan.to_random.sum() / plan.chosen.sum() - 0.1) < 0.01
    assert ((plan.random_ids >= 1000) & (plan.random_ids < 2000)).all()


def test_tavp_masks_only_tags(pretraining_world):
    processor = pretraining_world["processor"]
    records = pretraining_world["corpus"].records[20:36]
    collator = DataCollatorForTAVP(processor, mlm_probability=0.05, seed=1)
    batch = collator([{"idx": i, **_row(r)} for i, r in enumerate(records)])
    tag_positions = batch["tag_labels"] != -100
    assert tag_positions.any(dim=1).all()  # at least one masked tag per image
    assert (batch["token_type_ids"][tag_positions] == 1).all()
    assert not (batch["input_ids"][tag_positions] == processor.image_token_id).any()
    assert (batch["input_ids"] == processor.image_token_id).sum() == sum(len(r.labels) for r in records)
    outputs = VLMixerForPreTraining(pretraining_world["config"]).eval()(**batch)
    assert outputs.tag_loss is not None and outputs.mlm_loss is None and outputs.contrastive_loss is None


def _row(record):
    return {
        "features": record.features,
        "boxes": record.boxes,
        "labels": record.labels,
        "scores": record.scores,
        "image_width": record.image_width,
        "image_height": record.image_height,
        "image_id": record.image_id,
    }


def test_bad_collator_arguments(pretraining_world):
    with pytest.raises(ValueError, match="mlm_probability must be in"):
        DataCollatorForVALP(pretraining_world["processor"], mlm_probability=0.0)
    with pytest.raises(ValueError, match="missing the fields"):
        DataCollatorForTAVP(pretraining_world["processor"])([{"idx": 0, "features": []}])
