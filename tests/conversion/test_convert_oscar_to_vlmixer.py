import json

import pytest
import torch
from transformers import BertConfig, BertForPreTraining

from conversion.convert_oscar_to_vlmixer import convert_oscar_checkpoint, main
from modeling_vlmixer import VLMixerForMaskedLM, VLMixerModel, box_geometry


FEATURE_DIM = 20
HIDDEN = 32


@pytest.fixture
def oscar_checkpoint(tmp_path):
    """A small state dict in Oscar's naming: bert.*, bert.img_embedding (hidden x (D + 6)), bert.LayerNorm,
    cls.predictions.*, cls.seq_relationship.* and a VQA classifier.*."""
    config = BertConfig(
        vocab_size=90,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=40,
        max_position_embeddings=50,
    )
    torch.manual_seed(1)
    state = {k: v.clone() for k, v in BertForPreTraining(config).state_dict().items()}
    state.pop("cls.predictions.decoder.weight")
    state["bert.img_embedding.weight"] = torch.randn(HIDDEN, FEATURE_DIM + 6)
    state["bert.img_embedding.bias"] = torch.randn(HIDDEN)
    state["bert.LayerNorm.weight"] = torch.rand(HIDDEN) + 0.5
    state["bert.LayerNorm.bias"] = torch.randn(HIDDEN)
    state["classifier.0.weight"] = torch.randn(HIDDEN * 2, HIDDEN)
    state["classifier.3.weight"] = torch.randn(3129, HIDDEN * 2)
    path = tmp_path / "oscar"
    path.mkdir()
    torch.save(state, path / "pytorch_model.bin")
    (path / "config.json").write_text(json.dumps({**config.to_dict(), "img_feature_dim": FEATURE_DIM + 6}))
    return state, path


def test_oscar_tensors_land_where_they_should(tmp_path, oscar_checkpoint):
    state, path = oscar_checkpoint
    report = convert_oscar_checkpoint(
        path / "pytorch_model.bin", tmp_path / "out", visual_feature_dim=FEATURE_DIM
    )
    model = VLMixerForMaskedLM.from_pretrained(tmp_path / "out")
    params = model.state_dict()
    visual = "vlmixer.visual_embeddings."
    weight = state["bert.img_embedding.weight"]
    assert torch.equal(params[visual + "feature_projection.weight"], weight[:, :FEATURE_DIM])
    assert torch.equal(params[visual + "feature_projection.bias"], state["bert.img_embedding.bias"])
    assert torch.equal(params[visual + "box_projection.weight"][:, :6], weight[:, FEATURE_DIM:])
    assert torch.equal(params[visual + "box_projection.weight"][:, 6], torch.zeros(HIDDEN))
    assert torch.equal(params[visual + "box_projection.bias"], torch.zeros(HIDDEN))
    assert torch.equal(params[visual + "feature_layer_norm.weight"], state["bert.LayerNorm.weight"])
    assert torch.equal(params[visual + "feature_layer_norm.bias"], state["bert.LayerNorm.bias"])
    assert torch.equal(
        params["vlmixer.encoder.layer.1.attention.self.key.weight"],
        state["bert.encoder.layer.1.attention.self.key.weight"],
    )
    assert torch.equal(
        params["cls.predictions.transform.dense.weight"], state["cls.predictions.transform.dense.weight"]
    )
    assert torch.equal(
        VLMixerModel.from_pretrained(tmp_path / "out").pooler.dense.weight, state["bert.pooler.dense.weight"]
    )

    # The split is exact before normalization: W_f f + b + W_b g == Oscar's W [f; x1, y1, x2, y2, w, h] + b.
    features, boxes = torch.randn(5, FEATURE_DIM), torch.tensor([[0.1, 0.2, 0.6, 0.9]]).repeat(5, 1)
    visual_embeddings = model.vlmixer.visual_embeddings
    ours = visual_embeddings.feature_projection(features) + visual_embeddings.box_projection(
        box_geometry(boxes)
    )
    oscar = torch.nn.functional.linear(
        torch.cat([features, box_geometry(boxes)[:, :6]], -1), weight, state["bert.img_embedding.bias"]
    )
    torch.testing.assert_close(ours, oscar)

    assert report.dropped["classifier.3.weight"].startswith("task head")
    assert "next-sentence" in report.dropped["cls.seq_relationship.weight"]
    assert report.initialized == [
        visual + "box_layer_norm.bias",
        visual + "box_layer_norm.weight",
        visual + "box_projection.bias",
    ]
    formatted = report.format()
    assert (
        "bert.img_embedding.weight[:, :feature_dim] -> vlmixer.visual_embeddings.feature_projection.weight"
        in formatted
    )


def test_feature_only_projection_and_wrong_width(tmp_path, oscar_checkpoint):
    state, path = oscar_checkpoint
    with pytest.raises(
        ValueError, match="bert.img_embedding.weight has width 26; expected visual_feature_dim"
    ):
        convert_oscar_checkpoint(path, tmp_path / "wrong", visual_feature_dim=2048)
    assert not (tmp_path / "wrong").exists()
    report = convert_oscar_checkpoint(path, tmp_path / "wide", visual_feature_dim=FEATURE_DIM + 6)
    assert "vlmixer.visual_embeddings.box_projection.weight" in report.initialized


def test_not_an_oscar_checkpoint_and_missing_config(tmp_path, oscar_checkpoint):
    state, path = oscar_checkpoint
    torch.save({k: v for k, v in state.items() if "img_embedding" not in k}, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="no bert.img_embedding.weight"):
        convert_oscar_checkpoint(path, tmp_path / "out", visual_feature_dim=FEATURE_DIM)
    (path / "config.json").unlink()
    with pytest.raises(ValueError, match="No config at"):
        convert_oscar_checkpoint(path, tmp_path / "out", visual_feature_dim=FEATURE_DIM)


def test_command_line(tmp_path, oscar_checkpoint, capsys):
    _, path = oscar_checkpoint
    main(
        [
            "--checkpoint",
            str(path),
            "--output_dir",
            str(tmp_path / "cli"),
            "--visual_feature_dim",
            str(FEATURE_DIM),
        ]
    )
    out = capsys.readouterr().out
    assert "dropped      classifier.0.weight" in out and "VLMixer checkpoint written" in out
