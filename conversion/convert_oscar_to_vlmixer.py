"""Oscar / VinVL-style checkpoint -> VLMixer checkpoint.

Oscar's `BertImgModel` state dict has the BERT keys under `bert.*`, one image projection
`bert.img_embedding` of shape `(hidden, feature_dim + 6)` applied to `[feature; x1, y1, x2, y2, w, h]`,
a top-level image LayerNorm `bert.LayerNorm`, the MLM head `cls.predictions.*`, and task heads such as
`classifier.*`. VLMixer embeds a region as `LayerNorm(W_f f) + LayerNorm(W_b g)` with
`g = (x1, y1, x2, y2, w, h, area)`, so the mapping is:

- `bert.img_embedding.weight[:, :feature_dim]` -> `visual_embeddings.feature_projection.weight`,
  `bert.img_embedding.bias` -> `visual_embeddings.feature_projection.bias`;
- `bert.img_embedding.weight[:, feature_dim:]` (the six box columns) -> the first six columns of
  `visual_embeddings.box_projection.weight`; its `area` column and bias start at zero;
- `bert.LayerNorm` -> `visual_embeddings.feature_layer_norm`; `box_layer_norm` is newly initialized;
- the rest as for BERT (see `convert_bert_to_vlmixer`); task heads are dropped and reported.

This is an initialization, not an equivalence: Oscar normalizes the sum of the feature and box
projections with one LayerNorm, VLMixer normalizes each part.

    vlmixer-convert-oscar --checkpoint oscar/pytorch_model.bin --config oscar/config.json --output_dir out
"""

import argparse
import json
import os
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig

from modeling_vlmixer import VLMixerForMaskedLM
from processing.tokenization import add_image_token

from .checkpoint_io import ConversionReport, check_output_dir, load_state_dict
from .convert_bert_to_vlmixer import (
    convert_state_dict,
    initialized_vlmixer,
    vlmixer_config_from_bert,
    write_converted_checkpoint,
)


OSCAR_BOX_DIM = 6
IMAGE_KEYS = (
    "bert.img_embedding.weight",
    "bert.img_embedding.bias",
    "bert.LayerNorm.weight",
    "bert.LayerNorm.bias",
)


def split_image_embedding(
    weight: torch.Tensor, visual_feature_dim: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Splits Oscar's `(hidden, feature_dim [+ 6])` image projection into feature and box parts.

    Returns:
        `(feature_weight (hidden, feature_dim), box_weight (hidden, 6) or None)`.

    Raises:
        ValueError: when the width is neither `visual_feature_dim` nor `visual_feature_dim + 6`.
    """
    width = weight.shape[1]
    if width == visual_feature_dim + OSCAR_BOX_DIM:
        return weight[:, :visual_feature_dim], weight[:, visual_feature_dim:]
    if width == visual_feature_dim:
        return weight, None
    raise ValueError(
        f"bert.img_embedding.weight has width {width}; expected visual_feature_dim ({visual_feature_dim}) "
        f"or visual_feature_dim + {OSCAR_BOX_DIM} ({visual_feature_dim + OSCAR_BOX_DIM}) for Oscar's "
        "[feature; x1, y1, x2, y2, w, h] input."
    )


def convert_oscar_state_dict(
    source_state_dict: dict[str, torch.Tensor],
    model: VLMixerForMaskedLM,
    pooler_state: dict[str, torch.Tensor],
    visual_feature_dim: int,
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Maps an Oscar-style state dict onto VLMixer (text part as for BERT, image part split)."""
    if "bert.img_embedding.weight" not in source_state_dict:
        raise ValueError("Not an Oscar-style checkpoint: it has no bert.img_embedding.weight.")
    text_part = {key: value for key, value in source_state_dict.items() if key not in IMAGE_KEYS}
    state_dict, report = convert_state_dict(text_part, model, pooler_state)
    for key in [k for k in report.dropped if k.startswith("classifier.")]:
        report.dropped[key] = "task head; fine-tune a VLMixer head instead"

    prefix = "vlmixer.visual_embeddings."
    weight = source_state_dict["bert.img_embedding.weight"]
    feature_weight, box_weight = split_image_embedding(weight, visual_feature_dim)
    state_dict[prefix + "feature_projection.weight"] = feature_weight.clone()
    report.mapped["bert.img_embedding.weight[:, :feature_dim]"] = prefix + "feature_projection.weight"
    if "bert.img_embedding.bias" in source_state_dict:
        state_dict[prefix + "feature_projection.bias"] = source_state_dict["bert.img_embedding.bias"].clone()
        report.mapped["bert.img_embedding.bias"] = prefix + "feature_projection.bias"
    if box_weight is not None:
        box_projection = torch.zeros_like(state_dict[prefix + "box_projection.weight"])
        box_projection[:, :OSCAR_BOX_DIM] = box_weight
        state_dict[prefix + "box_projection.weight"] = box_projection
        state_dict[prefix + "box_projection.bias"] = torch.zeros_like(
            state_dict[prefix + "box_projection.bias"]
        )
        # Columns 0-5 of the box projection; the area column and the bias start at zero.
        report.mapped["bert.img_embedding.weight[:, feature_dim:]"] = prefix + "box_projection.weight"
    for name in ("weight", "bias"):
        key = f"bert.LayerNorm.{name}"
        if key in source_state_dict:
            state_dict[prefix + f"feature_layer_norm.{name}"] = source_state_dict[key].clone()
            report.mapped[key] = prefix + f"feature_layer_norm.{name}"

    report.initialized = sorted(set(state_dict) - set(report.mapped.values()))
    return state_dict, report


def convert_oscar_checkpoint(
    checkpoint: str | os.PathLike,
    output_dir: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    tokenizer_path: str | os.PathLike | None = None,
    visual_feature_dim: int = 2048,
    seed: int = 0,
    overwrite: bool = False,
) -> ConversionReport:
    """Converts an Oscar/VinVL-style checkpoint into a VLMixer checkpoint at `output_dir` (atomically).

    Args:
        checkpoint: the state-dict file (`pytorch_model.bin` / `.safetensors`) or its directory.
        config_path: the BERT-style `config.json` (defaults to the one beside the checkpoint).
        tokenizer_path: a tokenizer directory (defaults to the checkpoint directory if it has one).
        visual_feature_dim: width of the region features without Oscar's 6 box values.
    """
    check_output_dir(output_dir, overwrite)
    checkpoint = Path(checkpoint)
    checkpoint_dir = checkpoint if checkpoint.is_dir() else checkpoint.parent
    config_path = Path(config_path) if config_path is not None else checkpoint_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"No config at {config_path}: pass the Oscar checkpoint's BERT-style config.json.")
    try:
        bert_config = BertConfig.from_dict(json.loads(config_path.read_text()))
    except json.JSONDecodeError as error:
        raise ValueError(f"Cannot parse the config {config_path}: {error}") from error

    tokenizer_dir = Path(tokenizer_path) if tokenizer_path is not None else checkpoint_dir
    tokenizer = None
    image_token_id = 1
    if any((tokenizer_dir / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        tokenizer, image_token_id = add_image_token(AutoTokenizer.from_pretrained(tokenizer_dir))

    config = vlmixer_config_from_bert(
        bert_config, visual_feature_dim=visual_feature_dim, image_token_id=image_token_id
    )
    model, pooler_state = initialized_vlmixer(config, seed)
    state_dict, report = convert_oscar_state_dict(
        load_state_dict(checkpoint), model, pooler_state, visual_feature_dim
    )
    write_converted_checkpoint(output_dir, model, state_dict, tokenizer, report, overwrite)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="Oscar state-dict file or its directory.")
    parser.add_argument("--config", default=None, help="Oscar's BERT-style config.json.")
    parser.add_argument("--tokenizer", default=None, help="Tokenizer directory (BERT uncased vocabulary).")
    parser.add_argument("--output_dir", required=True, help="Where to write the VLMixer checkpoint.")
    parser.add_argument(
        "--visual_feature_dim", type=int, default=2048, help="Region feature width without boxes."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the newly initialized weights.")
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output directory.")
    args = parser.parse_args(argv)
    report = convert_oscar_checkpoint(
        args.checkpoint,
        args.output_dir,
        config_path=args.config,
        tokenizer_path=args.tokenizer,
        visual_feature_dim=args.visual_feature_dim,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(report.format())
    print(f"VLMixer checkpoint written to {args.output_dir}")


if __name__ == "__main__":
    main()
