import json
import os

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertForPreTraining, BertModel

from conversion.checkpoint_io import load_state_dict
from conversion.convert_bert_to_vlmixer import convert_bert_checkpoint, main, map_bert_key
from modeling_vlmixer import VLMixerForMaskedLM, VLMixerModel


SENTENCES = [
    "A dog runs across the grass next to a red frisbee.",
    "Two giraffes stand near a traffic light.",
    "",
    "The quick brown fox jumps over the lazy dog while a skateboarder watches.",
]


def test_minilm_text_equivalence(tmp_path, minilm_path):
    """Real BERT weights, converted: same last_hidden_state and pooler_output as transformers' BertModel."""
    output_dir = tmp_path / "vlmixer-minilm"
    report = convert_bert_checkpoint(minilm_path, output_dir, visual_feature_dim=2048)
    assert len(report.mapped) == 103 and "embeddings.position_ids" in report.dropped
    assert any(key.startswith("vlmixer.visual_embeddings.") for key in report.initialized)
    assert any(key.startswith("cls.predictions.") for key in report.initialized)  # MiniLM has no MLM head

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    bert = BertModel.from_pretrained(minilm_path, attn_implementation="eager").eval()
    for implementation in ("eager", "sdpa"):
        vlmixer = VLMixerModel.from_pretrained(output_dir, attn_implementation=implementation).eval()
        with torch.no_grad():
            expected, actual = bert(**batch), vlmixer(**batch)
        mask = batch["attention_mask"].bool()
        assert (expected.last_hidden_state - actual.last_hidden_state)[mask].abs().max() <= 1e-5
        assert (expected.pooler_output - actual.pooler_output).abs().max() <= 1e-5

    # The converted tokenizer tokenizes text exactly as BERT's and knows the placeholder as id 1.
    converted = AutoTokenizer.from_pretrained(output_dir)
    assert converted(SENTENCES).input_ids == tokenizer(SENTENCES).input_ids
    assert converted.convert_tokens_to_ids("[IMG]") == vlmixer.config.image_token_id == 1
    assert converted("a [IMG] on grass").input_ids[2] == 1
    assert json.loads((output_dir / "conversion_report.json").read_text())["mapped"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


@pytest.fixture
def tiny_bert_for_pretraining(tmp_path):
    config = BertConfig(
        vocab_size=120,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=40,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    model = BertForPreTraining(config).eval()
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
    path = tmp_path / "bert"
    model.save_pretrained(path)
    return model, path


def test_bert_for_pretraining_keeps_the_mlm_head(tmp_path, tiny_bert_for_pretraining):
    bert, path = tiny_bert_for_pretraining
    report = convert_bert_checkpoint(path, tmp_path / "out", visual_feature_dim=8)
    assert (
        report.mapped["bert.encoder.layer.1.output.dense.weight"]
        == "vlmixer.encoder.layer.1.output.dense.weight"
    )
    assert report.mapped["cls.predictions.transform.dense.weight"] == "cls.predictions.transform.dense.weight"
    assert "next-sentence" in report.dropped["cls.seq_relationship.weight"]
    assert not any(key.startswith("cls.") for key in report.initialized)

    vlmixer = VLMixerForMaskedLM.from_pretrained(tmp_path / "out").eval()
    input_ids = torch.randint(5, 120, (2, 9))
    with torch.no_grad():
        expected = bert(input_ids).prediction_logits
        actual = vlmixer(input_ids).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_pickled_checkpoint_is_read_with_weights_only(tmp_path, tiny_bert_for_pretraining):
    bert, _ = tiny_bert_for_pretraining
    path = tmp_path / "bert-bin"
    bert.config.save_pretrained(path)
    torch.save(bert.state_dict(), path / "pytorch_model.bin")
    report = convert_bert_checkpoint(path, tmp_path / "out")
    assert "bert.embeddings.word_embeddings.weight" in report.mapped

    class Payload:  # anything but tensors must be refused, not executed
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"weights": Payload()}, path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="Cannot read the checkpoint file"):
        load_state_dict(path)


def test_corrupt_or_missing_weights_and_occupied_output(tmp_path, tiny_bert_for_pretraining):
    _, path = tiny_bert_for_pretraining
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="Cannot read the checkpoint file .*model.safetensors"):
        convert_bert_checkpoint(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="No weights in"):
        load_state_dict(path)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="is not empty"):
        convert_bert_checkpoint(path, occupied)


def test_shape_mismatch_names_the_key(tmp_path, tiny_bert_for_pretraining):
    bert, path = tiny_bert_for_pretraining
    state = bert.state_dict()
    state["bert.pooler.dense.weight"] = torch.zeros(3, 3)
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in state.items() if "decoder" not in k}, str(path / "model.safetensors")
    )
    with pytest.raises(ValueError, match=r"bert.pooler.dense.weight has shape \(3, 3\)"):
        convert_bert_checkpoint(path, tmp_path / "out")


def test_key_mapping_rules():
    assert map_bert_key("bert.embeddings.LayerNorm.gamma") == ("vlmixer.embeddings.LayerNorm.weight", None)
    assert (
        map_bert_key("encoder.layer.0.attention.self.query.bias")[0]
        == "vlmixer.encoder.layer.0.attention.self.query.bias"
    )
    assert map_bert_key("cls.predictions.decoder.weight")[0] is None
    assert map_bert_key("qa_outputs.weight") == (None, "no counterpart in VLMixer")


def test_command_line(tmp_path, tiny_bert_for_pretraining, capsys):
    _, path = tiny_bert_for_pretraining
    main(["--bert_path", str(path), "--output_dir", str(tmp_path / "cli"), "--visual_feature_dim", "16"])
    assert "VLMixer checkpoint written" in capsys.readouterr().out
    assert VLMixerModel.from_pretrained(tmp_path / "cli").config.visual_feature_dim == 16
