"""BERT checkpoint -> VLMixer checkpoint.

Maps a `BertModel`, `BertForMaskedLM` or `BertForPreTraining` directory (safetensors, or `.bin` read with
`weights_only=True`) onto VLMixer: the embeddings, encoder and pooler keep their weights, the MLM head is
kept for pre-training when the source has one, the NSP head is dropped, and the visual embeddings are
newly initialized. The tokenizer is copied with the visual placeholder `[IMG]` in the slot of `[unused0]`.

The written checkpoint is a `VLMixerForMaskedLM` that also holds the pooler, so that
`VLMixerModel.from_pretrained` reproduces BERT's `pooler_output`.

    vlmixer-convert-bert --bert_path path/to/bert --output_dir vlmixer-base --visual_feature_dim 2048
"""

import argparse
import json
import os
import re
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, set_seed

from modeling_vlmixer import VLMixerConfig, VLMixerForMaskedLM, VLMixerModel
from processing.tokenization import add_image_token

from .checkpoint_io import ConversionReport, check_output_dir, load_state_dict, write_directory_atomically


BERT_PREFIXES = ("bert.", "model.")
# BERT buffers and tied copies that a checkpoint may carry but that VLMixer derives itself.
DERIVED_KEYS = {
    "embeddings.position_ids": "buffer, rebuilt at load",
    "embeddings.token_type_ids": "buffer, rebuilt at load",
    "cls.predictions.decoder.weight": "tied to vlmixer.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "tied to cls.predictions.bias",
}


def _rename_legacy(key: str) -> str:
    # TF-era checkpoints name LayerNorm parameters gamma/beta.
    return re.sub(
        r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)
    )


def map_bert_key(key: str) -> tuple[str | None, str | None]:
    """Maps one BERT state-dict key to its VLMixer key.

    Returns:
        `(target_key, None)` when the key maps, or `(None, reason)` when it is dropped.
    """
    source = _rename_legacy(key)
    for prefix in BERT_PREFIXES:
        if source.startswith(prefix):
            source = source[len(prefix) :]
            break
    if source in DERIVED_KEYS:
        return None, DERIVED_KEYS[source]
    if source.startswith(("embeddings.", "encoder.", "pooler.")):
        return f"vlmixer.{source}", None
    if source.startswith("cls.predictions."):
        return source, None
    if source.startswith("cls.seq_relationship."):
        return None, "next-sentence-prediction head, not used by VLMixer"
    return None, "no counterpart in VLMixer"


def vlmixer_config_from_bert(bert_config, **overrides) -> VLMixerConfig:
    """A `VLMixerConfig` with the sizes of a `BertConfig`; `overrides` set VLMixer-only fields."""
    shared = (
        "vocab_size hidden_size num_hidden_layers num_attention_heads intermediate_size hidden_act "
        "hidden_dropout_prob attention_probs_dropout_prob max_position_embeddings type_vocab_size "
        "initializer_range layer_norm_eps pad_token_id"
    ).split()
    values = {
        name: getattr(bert_config, name) for name in shared if getattr(bert_config, name, None) is not None
    }
    position_type = getattr(bert_config, "position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"Only absolute position embeddings are supported, the BERT config has {position_type!r}."
        )
    values.update(overrides)
    return VLMixerConfig(**values)


def convert_state_dict(
    source_state_dict: dict[str, torch.Tensor],
    model: VLMixerForMaskedLM,
    pooler_state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Builds the VLMixer state dict (model keys plus `vlmixer.pooler.*`) from a BERT state dict.

    Keys the source does not provide keep the freshly initialized values of `model` / `pooler_state`.

    Raises:
        ValueError: when a mapped tensor's shape differs from the VLMixer parameter's.
    """
    target = {key: value.clone() for key, value in model.state_dict().items()}
    target.update({f"vlmixer.pooler.{key}": value.clone() for key, value in pooler_state.items()})
    # The decoder is tied: it is written once, as the word embeddings.
    target.pop("cls.predictions.decoder.weight", None)
    target.pop("cls.predictions.decoder.bias", None)

    report = ConversionReport()
    for key, tensor in source_state_dict.items():
        target_key, reason = map_bert_key(key)
        if target_key is None:
            report.dropped[key] = reason
            continue
        if target_key not in target:
            report.dropped[key] = f"maps to {target_key}, which VLMixer does not have"
            continue
        if tuple(tensor.shape) != tuple(target[target_key].shape):
            raise ValueError(
                f"Checkpoint tensor {key} has shape {tuple(tensor.shape)}, but VLMixer's {target_key} "
                f"has shape {tuple(target[target_key].shape)}."
            )
        target[target_key] = tensor.to(target[target_key].dtype).clone()
        report.mapped[key] = target_key
    report.initialized = sorted(set(target) - set(report.mapped.values()))
    return target, report


def convert_bert_checkpoint(
    bert_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    visual_feature_dim: int = 2048,
    seed: int = 0,
    overwrite: bool = False,
) -> ConversionReport:
    """Converts the BERT checkpoint directory `bert_path` into a VLMixer checkpoint at `output_dir`.

    Writes `config.json`, `model.safetensors`, the remote-code files, the tokenizer (when `bert_path` has
    one) and `conversion_report.json`, all at once (atomic rename of a temporary directory).

    Returns:
        The [`ConversionReport`] of mapped, dropped and newly initialized keys.
    """
    check_output_dir(output_dir, overwrite)
    bert_path = Path(bert_path)
    bert_config = AutoConfig.from_pretrained(bert_path)
    tokenizer = None
    if any((bert_path / name).is_file() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        tokenizer, image_token_id = add_image_token(AutoTokenizer.from_pretrained(bert_path))
        if len(tokenizer) != bert_config.vocab_size:
            raise ValueError(
                f"The tokenizer in {bert_path} has {len(tokenizer)} tokens with the visual placeholder, but the "
                f"BERT config has vocab_size={bert_config.vocab_size}; expected a vocabulary with an [unused0] slot."
            )
    else:
        image_token_id = VLMixerConfig.image_token_id

    config = vlmixer_config_from_bert(
        bert_config, visual_feature_dim=visual_feature_dim, image_token_id=image_token_id
    )
    model, pooler_state = initialized_vlmixer(config, seed)
    state_dict, report = convert_state_dict(load_state_dict(bert_path), model, pooler_state)
    write_converted_checkpoint(output_dir, model, state_dict, tokenizer, report, overwrite)
    return report


def initialized_vlmixer(
    config: VLMixerConfig, seed: int
) -> tuple[VLMixerForMaskedLM, dict[str, torch.Tensor]]:
    """A seeded, freshly initialized `VLMixerForMaskedLM` and pooler state: the values of every key that the
    source checkpoint does not provide."""
    set_seed(seed)
    model = VLMixerForMaskedLM(config)
    pooler_state = VLMixerModel(config).pooler.state_dict()
    config.architectures = ["VLMixerForMaskedLM"]
    return model, pooler_state


def write_converted_checkpoint(
    output_dir,
    model: VLMixerForMaskedLM,
    state_dict: dict,
    tokenizer,
    report: ConversionReport,
    overwrite: bool,
) -> None:
    """Writes weights (with remote code), tokenizer and `conversion_report.json` into `output_dir` at once."""

    def write(directory: Path) -> None:
        model.save_pretrained(directory, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        (directory / "conversion_report.json").write_text(json.dumps(report.to_dict(), indent=2))

    write_directory_atomically(output_dir, write, overwrite=overwrite)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bert_path", required=True, help="BERT checkpoint directory (config.json + weights)."
    )
    parser.add_argument("--output_dir", required=True, help="Where to write the VLMixer checkpoint.")
    parser.add_argument("--visual_feature_dim", type=int, default=2048, help="Width of the region features.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the newly initialized weights.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output directory.")
    args = parser.parse_args(argv)
    report = convert_bert_checkpoint(
        args.bert_path, args.output_dir, args.visual_feature_dim, seed=args.seed, overwrite=args.overwrite
    )
    print(report.format())
    print(f"VLMixer checkpoint written to {args.output_dir}")


if __name__ == "__main__":
    main()
