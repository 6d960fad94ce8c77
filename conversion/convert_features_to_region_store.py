# Copyright 2026 The VLMixer developers.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Region-feature files -> a region store (`vlmixer convert-features`).

Reads VinVL / Oscar+ TSV, BUTD / LXMERT `obj36` TSV or a folder of `.npz` files (formats documented in
`processing.readers`) and writes a memory-mapped region store (`processing.region_store`), atomically: after
an error nothing is left at the output path.

    # VinVL: features.tsv (2054-wide rows) + predictions.tsv (labels, pixel boxes, image sizes)
    vlmixer convert-features --format vinvl --features features.tsv --predictions predictions.tsv \\
        --output coco-vinvl-regions

    # BUTD / LXMERT obj36, with the Visual Genome objects vocabulary for the labels
    vlmixer convert-features --format butd --features train2014_obj36.tsv --objects-vocab objects_vocab.txt \\
        --output coco-butd-regions --skip-bad-rows

    # One .npz per image
    vlmixer convert-features --format npz --features regions/ --output my-regions --feature-dtype float32

Then `vlmixer build-gallery --store coco-vinvl-regions --output gallery` builds the patch gallery.
"""

from __future__ import annotations

import argparse
import os

from processing.readers import READERS, ButdTSVReader, NpzFolderReader, RegionReader, VinVLTSVReader
from processing.region_store import RegionStore


__all__ = ["convert_features", "make_reader", "main"]


def make_reader(
    format: str,
    features: str | os.PathLike,
    *,
    predictions: str | os.PathLike | None = None,
    objects_vocab: str | os.PathLike | None = None,
    feature_dim: int | None = None,
    box_tolerance: float = 0.01,
    skip_bad_rows: bool = False,
) -> RegionReader:
    """The reader of one feature dump.

    Args:
        format: `"vinvl"`, `"butd"` or `"npz"`.
        features: The features TSV (vinvl, butd) or the folder of `.npz` files (npz).
        predictions: The predictions TSV (vinvl only, required).
        objects_vocab: The objects vocabulary file (butd only, optional).
        feature_dim: Feature width `D` (vinvl: 2048 by default; others: inferred from the first row).
        box_tolerance: Tolerance of the VinVL box check, in units of the image size.
        skip_bad_rows: Skip corrupt rows instead of raising.

    Raises:
        ValueError: For an unknown format or a missing / misplaced companion file.
    """
    if format not in READERS:
        raise ValueError(f"Unknown region-feature format {format!r}; expected one of {sorted(READERS)}.")
    if format != "vinvl" and predictions is not None:
        raise ValueError(f"--predictions is only read for --format vinvl, not {format!r}.")
    if format != "butd" and objects_vocab is not None:
        raise ValueError(f"--objects-vocab is only read for --format butd, not {format!r}.")
    if format == "vinvl":
        if predictions is None:
            raise ValueError("--format vinvl needs --predictions (the predictions / labels TSV).")
        return VinVLTSVReader(
            features,
            predictions,
            feature_dim=2048 if feature_dim is None else feature_dim,
            box_tolerance=box_tolerance,
            skip_bad_rows=skip_bad_rows,
        )
    if format == "butd":
        return ButdTSVReader(
            features, objects_vocab=objects_vocab, feature_dim=feature_dim, skip_bad_rows=skip_bad_rows
        )
    return NpzFolderReader(features, feature_dim=feature_dim, skip_bad_rows=skip_bad_rows)


def convert_features(
    reader: RegionReader,
    output_dir: str | os.PathLike,
    *,
    feature_dtype: str = "float16",
    detector: str | None = None,
    shard_size: int = 1024,
    overwrite: bool = False,
    show_progress: bool = False,
) -> RegionStore:
    """Writes the records of `reader` into a new region store at `output_dir` (atomically).

    Args:
        reader: A reader of `processing.readers`. After the call, `reader.skipped` lists the skipped rows.
        output_dir: The store folder; must not exist or be empty, unless `overwrite`.
        feature_dtype: `"float16"` or `"float32"`.
        detector: Detector name recorded in the store; by default the reader format's (e.g. `"vinvl-x152c4"`).
        shard_size: Images per shard.
        overwrite: Replace a non-empty `output_dir`.
        show_progress: Show a progress bar.

    Returns:
        The store, opened.

    Raises:
        ValueError: On the first corrupt row, naming the file and the line (unless the reader skips them), or
            when `output_dir` is not empty. Nothing is written then.
    """
    return RegionStore.from_records(
        reader,
        output_dir,
        feature_dtype=feature_dtype,
        feature_dim=reader.feature_dim,
        detector=detector or reader.default_detector,
        shard_size=shard_size,
        overwrite=overwrite,
        show_progress=show_progress,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="vlmixer convert-features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=sorted(READERS), help="The input format.")
    parser.add_argument(
        "--features", required=True, help="The features TSV (vinvl, butd) or the folder of .npz files (npz)."
    )
    parser.add_argument("--predictions", default=None, help="vinvl: the predictions / labels TSV.")
    parser.add_argument(
        "--objects-vocab",
        "--objects_vocab",
        dest="objects_vocab",
        default=None,
        help="butd: objects vocabulary, line k names class k (default: labels are class ids).",
    )
    parser.add_argument(
        "--output", "--output_dir", dest="output", required=True, help="The region store folder."
    )
    parser.add_argument(
        "--feature-dim",
        "--feature_dim",
        dest="feature_dim",
        type=int,
        default=None,
        help="Feature width D (vinvl: 2048; others: that of the first row).",
    )
    parser.add_argument(
        "--feature-dtype",
        "--feature_dtype",
        dest="feature_dtype",
        default="float16",
        choices=["float16", "float32"],
        help="Dtype of the stored features.",
    )
    parser.add_argument(
        "--box-tolerance",
        "--box_tolerance",
        dest="box_tolerance",
        type=float,
        default=0.01,
        help="vinvl: largest disagreement of the normalized boxes with the predictions.",
    )
    parser.add_argument("--detector", default=None, help="Detector name to record (default: per format).")
    parser.add_argument(
        "--shard-size", "--shard_size", dest="shard_size", type=int, default=1024, help="Images per shard."
    )
    parser.add_argument(
        "--skip-bad-rows",
        "--skip_bad_rows",
        dest="skip_bad_rows",
        action="store_true",
        help="Skip corrupt rows (listed at the end) instead of stopping at the first one.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace a non-empty output folder.")
    args = parser.parse_args(argv)
    try:
        reader = make_reader(
            args.format,
            args.features,
            predictions=args.predictions,
            objects_vocab=args.objects_vocab,
            feature_dim=args.feature_dim,
            box_tolerance=args.box_tolerance,
            skip_bad_rows=args.skip_bad_rows,
        )
    except ValueError as error:
        parser.error(str(error))
    store = convert_features(
        reader,
        args.output,
        feature_dtype=args.feature_dtype,
        detector=args.detector,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        show_progress=True,
    )
    print(
        f"wrote {store.num_images} images, {store.num_regions} regions ({store.feature_dim}-d "
        f"{store.feature_dtype}) to {args.output}"
    )
    if reader.skipped:
        print(f"skipped {len(reader.skipped)} bad row(s):")
        for row in reader.skipped:
            print(f"  {row}")


if __name__ == "__main__":
    main()
