"""The `vlmixer` command line: `vlmixer <command> [options]`; `vlmixer` alone lists the commands and
`vlmixer <command> --help` explains one."""

import argparse
import sys


def _cmc_picture(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="vlmixer cmc-picture", description=_cmc_picture.__doc__)
    parser.add_argument(
        "--processor", required=True, help="A saved VLMixerProcessor with its gallery/ folder."
    )
    parser.add_argument("--gallery", default=None, help="A saved PatchGallery (default: the processor's).")
    parser.add_argument("--text", action="append", default=[], help="A sentence (repeat for more).")
    parser.add_argument("--text_file", default=None, help="A file with one sentence per line.")
    parser.add_argument("--output", required=True, help="The picture to write (.png, .svg, .pdf).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--r_cmc", type=float, default=None, help="Override the replacement probability.")
    args = parser.parse_args(argv)

    from processing import PatchGallery, VLMixerProcessor
    from processing.cross_modal_cutmix import CrossModalCutMix
    from processing.cutmix_picture import render_cutmix

    texts = list(args.text)
    if args.text_file:
        with open(args.text_file, encoding="utf-8") as handle:
            texts += [line.strip() for line in handle if line.strip()]
    if not texts:
        parser.error("give at least one --text or a --text_file")
    gallery = PatchGallery.from_pretrained(args.gallery) if args.gallery else None
    processor = VLMixerProcessor.from_pretrained(args.processor, gallery=gallery)
    if processor.cutmix is None:
        parser.error(f"{args.processor} has no gallery/ folder; pass --gallery")
    cutmix = processor.cutmix
    if args.r_cmc is not None:
        cutmix = CrossModalCutMix(
            processor.gallery, r_cmc=args.r_cmc, r_ctx=processor.r_ctx, num_shots=processor.num_shots
        )
    results = cutmix(
        texts,
        processor.tokenizer,
        processor.image_token_id,
        generator=args.seed,
        max_length=processor.valp_max_length,
    )
    path = render_cutmix(texts, results, processor.tokenizer, processor.gallery, args.output)
    print(f"wrote {path}")


_cmc_picture.__doc__ = (
    "Render sentences with the image patches that cross-modal CutMix put in place of their words."
)


# command -> (module, function taking argv). Each command module parses its own options.
COMMANDS = {
    "convert-bert": ("conversion.convert_bert_to_vlmixer", "main"),
    "convert-oscar": ("conversion.convert_oscar_to_vlmixer", "main"),
    "cmc-picture": ("modeling_vlmixer.cli", "_cmc_picture"),
    "extract-features": ("processing.region_detector", "main"),
    "build-gallery": ("processing.region_store", "build_gallery_main"),
    "convert-features": ("conversion.convert_features_to_region_store", "main"),
    "build-text-corpus": ("processing.text_corpus", "main"),
    "pretrain": ("modeling_vlmixer.pretraining", "main"),
    "finetune": ("modeling_vlmixer.finetuning", "main"),
    "demo": ("modeling_vlmixer.demo", "main"),
}


def main(argv: list[str] | None = None) -> None:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        print("available commands: " + ", ".join(sorted(COMMANDS)))
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    module, function = COMMANDS[argv[0]]
    getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    main()
