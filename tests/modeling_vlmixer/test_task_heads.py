"""The downstream heads: VQA / GQA question answering, NLVR2 visual reasoning, image-text retrieval."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.data import Dataset
from transformers import AutoModelForVisualQuestionAnswering, Trainer, TrainingArguments

from modeling_vlmixer import (
    AutoModelForImageTextRetrieval,
    AutoModelForVisualReasoning,
    VLMixerConfig,
    VLMixerForImageTextRetrieval,
    VLMixerForQuestionAnswering,
    VLMixerForVisualReasoning,
)
from tests.conftest import TINY, make_inputs


ANSWERS = ["yes", "no", "2", "red", "circle"]


def _qa_config(problem_type: str | None = "multi_label_classification") -> VLMixerConfig:
    return VLMixerConfig(
        **TINY,
        id2label=dict(enumerate(ANSWERS)),
        label2id={a: i for i, a in enumerate(ANSWERS)},
        problem_type=problem_type,
    )


def _pair_inputs(config: VLMixerConfig) -> dict[str, torch.Tensor]:
    """Three sentences, each with two images: the rows of `make_inputs` with two different seeds."""
    first, second = make_inputs(config, seed=0), make_inputs(config, seed=1)
    return {key: torch.stack([first[key], second[key]], dim=1) for key in first}


def _retrieval_inputs(config: VLMixerConfig) -> dict[str, torch.Tensor]:
    joint = make_inputs(config)
    image = make_inputs(config, seed=2)
    return {
        **joint,
        "labels": torch.tensor([1.0, 0.0, 1.0]),
        "text_input_ids": torch.tensor([[2, 5, 6, 3], [2, 8, 3, 0], [2, 9, 10, 3]]),
        "text_attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]]),
        **{f"image_{key}": value for key, value in image.items()},
    }


def test_vqa_loss_is_binary_cross_entropy_times_num_labels():
    torch.manual_seed(0)
    model = VLMixerForQuestionAnswering(_qa_config()).eval()
    inputs = make_inputs(model.config)
    scores = torch.tensor([[1.0, 0, 0, 0.3, 0], [0, 0.6, 0.9, 0, 0], [0, 0, 0, 0, 0]])
    outputs = model(**inputs, labels=scores)
    assert outputs.logits.shape == (3, len(ANSWERS))
    probabilities = outputs.logits.sigmoid()
    by_hand = -(scores * probabilities.log() + (1 - scores) * (1 - probabilities).log()).mean() * len(ANSWERS)
    torch.testing.assert_close(outputs.loss, by_hand)


def test_gqa_loss_is_cross_entropy_and_problem_type_is_inferred():
    torch.manual_seed(0)
    model = VLMixerForQuestionAnswering(_qa_config(problem_type=None)).eval()
    inputs = make_inputs(model.config)
    labels = torch.tensor([0, 3, 4])
    outputs = model(**inputs, labels=labels)
    assert model.config.problem_type == "single_label_classification"
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(outputs.logits, labels))


@pytest.mark.parametrize(
    ("problem_type", "labels", "message"),
    [
        ("multi_label_classification", torch.zeros(3, 4), r"soft scores of shape \(3, 5\)"),
        ("single_label_classification", torch.zeros(3, 5, dtype=torch.long), r"answer ids of shape \(3,\)"),
        ("regression", torch.zeros(3, 5), "must be 'multi_label_classification'"),
    ],
)
def test_question_answering_rejects_labels_that_do_not_fit(problem_type, labels, message):
    config = _qa_config(problem_type="multi_label_classification")
    config.problem_type = problem_type  # "regression" is not a problem of this head
    model = VLMixerForQuestionAnswering(config)
    with pytest.raises(ValueError, match=message):
        model(**make_inputs(config), labels=labels)


def test_visual_reasoning_concatenates_the_two_pooled_outputs():
    torch.manual_seed(0)
    config = VLMixerConfig(**TINY, id2label={0: "False", 1: "True"})
    model = VLMixerForVisualReasoning(config).eval()
    inputs = _pair_inputs(config)
    labels = torch.tensor([1, 0, 1])
    outputs = model(**inputs, labels=labels)
    assert outputs.logits.shape == (3, 2)
    pooled = [
        model.vlmixer(**{key: value[:, k] for key, value in inputs.items()}).pooler_output for k in (0, 1)
    ]
    by_hand = model.classifier(torch.cat(pooled, dim=-1))
    torch.testing.assert_close(outputs.logits, by_hand)
    torch.testing.assert_close(outputs.loss, torch.nn.functional.cross_entropy(by_hand, labels))


def test_visual_reasoning_rejects_inputs_without_a_pair_dimension():
    config = VLMixerConfig(**TINY)
    model = VLMixerForVisualReasoning(config)
    with pytest.raises(ValueError, match=r"input_ids must have shape \(batch, 2, seq_len\)"):
        model(**make_inputs(config))
    inputs = _pair_inputs(config)
    inputs["visual_features"] = inputs["visual_features"][:, 0]
    with pytest.raises(ValueError, match="visual_features must have a pair dimension"):
        model(**inputs)
    with pytest.raises(ValueError, match="NLVR2 has 2 classes"):
        VLMixerForVisualReasoning(VLMixerConfig(**TINY, num_labels=3))


def test_retrieval_scores_pairs_and_trains_both_embeddings():
    torch.manual_seed(0)
    config = VLMixerConfig(**TINY)
    model = VLMixerForImageTextRetrieval(config).eval()
    inputs = _retrieval_inputs(config)
    outputs = model(**inputs)
    assert outputs.logits.shape == (3,)
    torch.testing.assert_close(
        outputs.matching_loss,
        torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits, inputs["labels"]),
    )
    torch.testing.assert_close(outputs.text_embeds.norm(dim=-1), torch.ones(3))
    similarity = outputs.text_embeds @ outputs.image_embeds.t() / config.contrastive_temperature
    targets = torch.arange(3)
    by_hand = 0.5 * (
        torch.nn.functional.cross_entropy(similarity, targets)
        + torch.nn.functional.cross_entropy(similarity.t(), targets)
    )
    torch.testing.assert_close(outputs.contrastive_loss, by_hand)
    torch.testing.assert_close(outputs.loss, outputs.matching_loss + outputs.contrastive_loss)
    # The embeddings are those of the stand-alone first-stage functions.
    torch.testing.assert_close(
        outputs.text_embeds,
        model.get_text_features(inputs["text_input_ids"], attention_mask=inputs["text_attention_mask"]),
    )
    with pytest.raises(ValueError, match="needs both views"):
        model(**{k: v for k, v in inputs.items() if not k.startswith("image_")})


class _TensorRows(Dataset):
    """Rows of a batch of tensors, as dicts, for the default collator."""

    def __init__(self, batch: dict[str, torch.Tensor], repeat: int = 4):
        self.batch, self.size = batch, next(iter(batch.values())).shape[0]
        self.repeat = repeat

    def __len__(self) -> int:
        return self.size * self.repeat

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[index % self.size] for key, value in self.batch.items()}


def _vqa_rows(config):
    inputs = make_inputs(config)
    return {**inputs, "labels": torch.tensor([[1.0, 0, 0, 0.3, 0], [0, 0.6, 0.9, 0, 0], [0, 0, 0, 0, 1.0]])}


def _nlvr2_rows(config):
    return {**_pair_inputs(config), "labels": torch.tensor([1, 0, 1])}


def _retrieval_rows(config):
    inputs = make_inputs(config)
    return {**inputs, "labels": torch.tensor([1.0, 0.0, 1.0])}


@pytest.mark.parametrize(
    ("cls", "auto_cls", "config_kwargs", "rows"),
    [
        (
            VLMixerForQuestionAnswering,
            AutoModelForVisualQuestionAnswering,
            {"id2label": dict(enumerate(ANSWERS)), "problem_type": "multi_label_classification"},
            _vqa_rows,
        ),
        (
            VLMixerForVisualReasoning,
            AutoModelForVisualReasoning,
            {"id2label": {0: "False", 1: "True"}},
            _nlvr2_rows,
        ),
        (VLMixerForImageTextRetrieval, AutoModelForImageTextRetrieval, {}, _retrieval_rows),
    ],
)
def test_head_trains_with_trainer_saves_reloads_and_predicts_the_same(
    tmp_path, cls, auto_cls, config_kwargs, rows
):
    torch.manual_seed(0)
    config = VLMixerConfig(**TINY, **config_kwargs)
    model = cls(config)
    batch = rows(config)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=3,
        max_steps=4,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_TensorRows(batch))
    result = trainer.train()
    assert result.training_loss > 0 and torch.isfinite(torch.tensor(result.training_loss))
    changed = [name for name, param in model.named_parameters() if not torch.equal(param, before[name])]
    assert any(name.startswith(("classifier", "matching_head")) for name in changed)
    assert any(name.startswith("vlmixer.encoder") for name in changed)

    trainer.save_model(str(tmp_path / "saved"))
    saved = set(os.listdir(tmp_path / "saved"))
    assert "model.safetensors" in saved and "modeling_vlmixer.py" in saved
    model.eval()
    reloaded = auto_cls.from_pretrained(tmp_path / "saved").eval()
    assert type(reloaded) is cls
    assert reloaded.config.id2label == model.config.id2label
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded(**inputs).logits)


def test_heads_load_as_remote_code_in_a_fresh_process(tmp_path):
    """Every head's checkpoint names its class in `auto_map` and loads without the package installed."""
    torch.manual_seed(0)
    config = VLMixerConfig(**TINY, id2label=dict(enumerate(ANSWERS)))
    checkpoints = {}
    for cls in (VLMixerForQuestionAnswering, VLMixerForVisualReasoning, VLMixerForImageTextRetrieval):
        head_config = config if cls is VLMixerForQuestionAnswering else VLMixerConfig(**TINY)
        model = cls(head_config)
        model.save_pretrained(tmp_path / cls.__name__)
        checkpoints[cls.__name__] = str(tmp_path / cls.__name__)
    inputs = make_inputs(config)
    torch.save(inputs, tmp_path / "inputs.pt")
    expected = VLMixerForQuestionAnswering.from_pretrained(checkpoints["VLMixerForQuestionAnswering"]).eval()
    torch.save(expected(**inputs).logits.detach(), tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForVisualQuestionAnswering
        from transformers.dynamic_module_utils import get_class_from_dynamic_module
        checkpoints = {checkpoints!r}
        qa = AutoModelForVisualQuestionAnswering.from_pretrained(
            checkpoints["VLMixerForQuestionAnswering"], trust_remote_code=True
        ).eval()
        with torch.no_grad():
            logits = qa(**torch.load({str(tmp_path / "inputs.pt")!r})).logits
        assert torch.equal(logits, torch.load({str(tmp_path / "expected.pt")!r}))
        for name in ("VLMixerForVisualReasoning", "VLMixerForImageTextRetrieval"):
            import json, pathlib
            auto_map = json.loads((pathlib.Path(checkpoints[name]) / "config.json").read_text())["auto_map"]
            key = {{"VLMixerForVisualReasoning": "AutoModelForVisualReasoning",
                   "VLMixerForImageTextRetrieval": "AutoModelForImageTextRetrieval"}}[name]
            cls = get_class_from_dynamic_module(auto_map[key], checkpoints[name])
            assert cls.__name__ == name, cls
            cls.from_pretrained(checkpoints[name])
        assert "modeling_vlmixer" not in sys.modules, sorted(sys.modules)
        print("heads ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "heads ok" in result.stdout
