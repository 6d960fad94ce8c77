import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from modeling_vlmixer import VLMixerConfig, VLMixerForMaskedLM, VLMixerModel, box_geometry


def _model(config, cls=VLMixerModel, attn_implementation="sdpa", seed=0):
    torch.manual_seed(seed)
    return cls._from_config(config, attn_implementation=attn_implementation).eval()


def test_config_defaults_are_bert_base():
    config = VLMixerConfig()
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (30522, 768, 12)
    assert (config.num_attention_heads, config.intermediate_size) == (12, 3072)
    assert (config.max_position_embeddings, config.type_vocab_size) == (512, 2)
    assert config.visual_feature_dim == 2048 and config.image_token_id == 1
    assert AutoConfig.for_model("vlmixer").__class__ is VLMixerConfig


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 30, "num_attention_heads": 4}, "multiple of num_attention_heads"),
        ({"image_token_id": 40000}, "image_token_id"),
        ({"image_token_id": 0}, "image_token_id and pad_token_id must differ"),
        ({"visual_feature_dim": 0}, "visual_feature_dim must be positive"),
    ],
)
def test_config_rejects_inconsistent_sizes(kwargs, message):
    with pytest.raises(Exception, match=message):
        VLMixerConfig(**kwargs)


def test_forward_shapes_and_outputs(tiny_config, tiny_inputs):
    model = _model(tiny_config, attn_implementation="eager")
    outputs = model(**tiny_inputs, output_hidden_states=True, output_attentions=True)
    batch, seq_len = tiny_inputs["input_ids"].shape
    assert outputs.last_hidden_state.shape == (batch, seq_len, tiny_config.hidden_size)
    assert outputs.pooler_output.shape == (batch, tiny_config.hidden_size)
    assert len(outputs.hidden_states) == tiny_config.num_hidden_layers + 1
    assert len(outputs.attentions) == tiny_config.num_hidden_layers
    assert outputs.attentions[0].shape == (batch, tiny_config.num_attention_heads, seq_len, seq_len)
    as_tuple = model(**tiny_inputs, return_dict=False)
    torch.testing.assert_close(as_tuple[0], outputs.last_hidden_state)


def test_visual_embeddings_are_scattered_into_slots_in_order(tiny_config, tiny_inputs):
    model = _model(tiny_config)
    embeds = model.embed_inputs(
        tiny_inputs["input_ids"], tiny_inputs["visual_features"], tiny_inputs["visual_boxes"]
    )
    visual = model.visual_embeddings
    features, boxes = tiny_inputs["visual_features"], tiny_inputs["visual_boxes"]
    # Row 0: slots at positions 2, 3 take visual rows 0, 1. Row 1: slots 4, 5, 6 take rows 0, 1, 2.
    for (b, position), row in {(0, 2): 0, (0, 3): 1, (1, 4): 0, (1, 5): 1, (1, 6): 2}.items():
        expected = visual(features[b, row : row + 1], boxes[b, row : row + 1])[0]
        torch.testing.assert_close(embeds[b, position], expected)
    # Words keep their word embeddings; the unused visual row 2 of sequence 0 is ignored.
    torch.testing.assert_close(embeds[2], model.embeddings.word_embeddings(tiny_inputs["input_ids"][2]))
    changed = dict(tiny_inputs)
    changed["visual_features"] = features.clone()
    changed["visual_features"][0, 2] += 100.0
    torch.testing.assert_close(model(**changed).last_hidden_state, model(**tiny_inputs).last_hidden_state)


def test_visual_embedding_formula(tiny_config):
    model = _model(tiny_config)
    visual = model.visual_embeddings
    features = torch.randn(4, tiny_config.visual_feature_dim)
    boxes = torch.tensor(
        [[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.3, 0.3], [0.2, 0.1, 0.9, 0.4]]
    )
    geometry = box_geometry(boxes)
    torch.testing.assert_close(geometry[0], torch.tensor([0.1, 0.2, 0.5, 0.6, 0.4, 0.4, 0.16]))
    expected = visual.feature_layer_norm(visual.feature_projection(features)) + visual.box_layer_norm(
        visual.box_projection(geometry)
    )
    torch.testing.assert_close(visual(features, boxes), expected)


def test_position_ids_and_segments_reach_the_embeddings(tiny_config, tiny_inputs):
    model = _model(tiny_config)
    default = dict(tiny_inputs, position_ids=None, token_type_ids=None)
    assert not torch.allclose(model(**default).last_hidden_state, model(**tiny_inputs).last_hidden_state)


def test_padding_does_not_change_real_tokens(tiny_config, tiny_inputs):
    model = _model(tiny_config)
    full = model(**tiny_inputs).last_hidden_state
    alone = model(
        **{k: v[2:3, :5] if v.dim() == 2 else v[2:3] for k, v in tiny_inputs.items()}
    ).last_hidden_state
    torch.testing.assert_close(full[2, :5], alone[0], atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_agree(tiny_config, tiny_inputs):
    eager = _model(tiny_config, attn_implementation="eager")
    sdpa = _model(tiny_config, attn_implementation="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    out_eager, out_sdpa = eager(**tiny_inputs), sdpa(**tiny_inputs)
    mask = tiny_inputs["attention_mask"].bool()
    assert (out_eager.last_hidden_state - out_sdpa.last_hidden_state)[mask].abs().max() <= 1e-5
    assert (out_eager.pooler_output - out_sdpa.pooler_output).abs().max() <= 1e-5


def test_gradient_checkpointing_gives_the_same_gradients(tiny_config, tiny_inputs):
    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = _model(tiny_config, cls=VLMixerForMaskedLM).train()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.vlmixer.encoder.layer[0].gradient_checkpointing
        labels = tiny_inputs["input_ids"].clone()
        labels[tiny_inputs["attention_mask"] == 0] = -100
        model(**tiny_inputs, labels=labels).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys() and len(plain) > 20
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], atol=1e-6, rtol=1e-5, msg=name)
    # The visual embeddings receive gradients through the slots.
    assert plain["vlmixer.visual_embeddings.feature_projection.weight"].abs().sum() > 0


def test_mlm_head_is_tied_and_loss_is_cross_entropy(tiny_config, tiny_inputs):
    model = _model(tiny_config, cls=VLMixerForMaskedLM)
    assert (
        model.cls.predictions.decoder.weight.data_ptr()
        == model.vlmixer.embeddings.word_embeddings.weight.data_ptr()
    )
    labels = torch.full_like(tiny_inputs["input_ids"], -100)
    labels[0, 2:4] = torch.tensor([40, 41])  # the word pieces the patch replaced
    outputs = model(**tiny_inputs, labels=labels)
    expected = torch.nn.functional.cross_entropy(outputs.logits[0, 2:4], labels[0, 2:4])
    torch.testing.assert_close(outputs.loss, expected)


@pytest.mark.parametrize("cls", [VLMixerModel, VLMixerForMaskedLM])
def test_save_load_round_trip_is_exact(tmp_path, tiny_config, tiny_inputs, cls):
    model = _model(tiny_config, cls=cls)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(name.endswith(".bin") for name in files)
    assert {"configuration_vlmixer.py", "modeling_vlmixer.py"} <= files
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_vlmixer.VLMixerModel"
    assert auto_map["AutoModelForMaskedLM"] == "modeling_vlmixer.VLMixerForMaskedLM"
    reloaded = cls.from_pretrained(tmp_path).eval()
    first, second = model(**tiny_inputs), reloaded(**tiny_inputs)
    assert torch.equal(first[0], second[0])
    auto_cls = AutoModel if cls is VLMixerModel else AutoModelForMaskedLM
    assert isinstance(auto_cls.from_pretrained(tmp_path), cls)


def test_remote_code_loads_in_a_fresh_process(tmp_path, tiny_config, tiny_inputs):
    """`trust_remote_code` loading in a process that never imports the package, with an empty HF_HOME."""
    model = _model(tiny_config, cls=VLMixerForMaskedLM)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    torch.save(tiny_inputs, tmp_path / "inputs.pt")
    expected = model.vlmixer(**tiny_inputs)
    torch.save(
        {"hidden": expected.last_hidden_state, "logits": model(**tiny_inputs).logits},
        tmp_path / "expected.pt",
    )
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModel, AutoModelForMaskedLM
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        base = AutoModel.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
        mlm = AutoModelForMaskedLM.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
        assert "modeling_vlmixer" not in sys.modules and "processing" not in sys.modules, sorted(sys.modules)
        assert type(base).__name__ == "VLMixerModel", type(base)
        assert type(base).__module__.startswith("transformers_modules"), type(base).__module__
        with torch.no_grad():
            assert torch.equal(base(**inputs).last_hidden_state, expected["hidden"])
            assert torch.equal(mlm(**inputs).logits, expected["logits"])
        print("remote code ok")
        """
    )
    hf_home = tmp_path / "hf_home"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    # Run from an empty directory so the repository is not importable by accident.
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "remote code ok" in result.stdout
    assert any((hf_home / "modules").rglob("modeling_vlmixer.py"))


# ---- bad inputs: a clear ValueError at the boundary, never a shape error from deep inside torch ----


def _bad(inputs, **changes):
    return dict(inputs, **changes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda i: {"visual_features": i["visual_features"][..., :5]},
            "feature width 5.*visual_feature_dim=12",
        ),
        (lambda i: {"visual_features": i["visual_features"][:, :2]}, "visual_boxes must have shape"),
        (
            lambda i: {
                "visual_features": i["visual_features"][:, :2],
                "visual_boxes": i["visual_boxes"][:, :2],
            },
            "Sequence 1 of input_ids has 3 visual slots but visual_features has only 2 rows",
        ),
        (lambda i: {"visual_features": i["visual_features"][:2]}, r"must have shape \(batch=3"),
        (
            lambda i: {"visual_features": None, "visual_boxes": None},
            "contains 5 visual slots.*no visual_features",
        ),
        (lambda i: {"visual_boxes": None}, "visual_boxes is missing"),
        (
            lambda i: {
                "visual_features": i["visual_features"].index_fill(2, torch.tensor([0]), float("nan"))
            },
            "visual_features contains NaN",
        ),
        (lambda i: {"visual_boxes": i["visual_boxes"] * 640}, r"normalized to \[0, 1\]"),
        (lambda i: {"visual_boxes": i["visual_boxes"] - 2}, r"normalized to \[0, 1\]"),
        (
            lambda i: {"visual_boxes": i["visual_boxes"].index_fill(2, torch.tensor([1]), float("inf"))},
            "visual_boxes contains NaN or infinite",
        ),
        (lambda i: {"attention_mask": i["attention_mask"][:, :4]}, "attention_mask must have shape"),
        (lambda i: {"input_ids": i["input_ids"][0]}, r"input_ids must have shape \(batch, seq_len\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(tiny_config, tiny_inputs, change, message):
    model = _model(tiny_config)
    with pytest.raises(ValueError, match=message):
        model(**_bad(tiny_inputs, **change(tiny_inputs)))


def test_inverted_box_is_rejected(tiny_config, tiny_inputs):
    boxes = tiny_inputs["visual_boxes"].clone()
    boxes[0, 0] = torch.tensor([0.6, 0.1, 0.2, 0.5])
    with pytest.raises(ValueError, match="inverted boxes"):
        _model(tiny_config)(**_bad(tiny_inputs, visual_boxes=boxes))


def test_inputs_embeds_excludes_visual_inputs(tiny_config, tiny_inputs):
    model = _model(tiny_config)
    embeds = model.embed_inputs(
        tiny_inputs["input_ids"], tiny_inputs["visual_features"], tiny_inputs["visual_boxes"]
    )
    from_embeds = model(
        inputs_embeds=embeds,
        attention_mask=tiny_inputs["attention_mask"],
        token_type_ids=tiny_inputs["token_type_ids"],
        position_ids=tiny_inputs["position_ids"],
    )
    torch.testing.assert_close(from_embeds.last_hidden_state, model(**tiny_inputs).last_hidden_state)
    with pytest.raises(ValueError, match="need input_ids"):
        model(inputs_embeds=embeds, visual_features=tiny_inputs["visual_features"])
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        model()
