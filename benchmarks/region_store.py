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
"""Random reads from a region store and its memory use, small and large synthetic stores. Prints its figures.

For each store size (default: 1k and 100k images of 50 regions) a synthetic store is written to a temporary
folder, then a fresh subprocess opens it with `RegionStore.load` and reads `--reads` (10k) random records
(`store[i]`, a `RegionFeatures` with float32 features). The subprocess reports

- the wall time of opening the store and the random reads per second;
- its resident memory after the imports, after opening, and after the reads, split into anonymous pages (heap:
  what the process itself allocated) and file-backed pages (mapped store pages it touched, which the kernel
  can drop at any time). The point: neither grows with the size of the store, only with what is read.
- a control: the file-backed pages that plain `mmap` reads of the same files and sizes map, without Arrow
  or `datasets`. On kernels whose page cache uses large folios, a page fault maps far more than the bytes
  read, so after 10k random reads most of a warm 2.6 GB store is mapped (and counted in RSS) either way;
  those pages are shared page cache that the kernel reclaims under memory pressure, not memory of the process.
- for reference, the cost of the first lookup by image id (it builds an `image_id -> row` dictionary, the one
  structure that does grow with the store).

Feature width: 100k x 50 regions x 2048 x float16 is 20 GB, too much to write on a shared CI disk in a
benchmark, and the width does not change what is measured (open cost and memory do not depend on it; a read
costs more bytes). So the sizes are compared at `--feature-dim 256` (100k images: 2.6 GB), and the 1k store is
also measured at the real VinVL width 2048 for the read rate of realistic records.

Usage:

    python benchmarks/region_store.py                                   # 1k@2048, 1k@256, 100k@256
    python benchmarks/region_store.py --sizes 1000 10000 --reads 2000   # quick run
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np


REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from processing.feature_extraction_vlmixer import RegionFeatures  # noqa: E402
from processing.region_store import RegionStore  # noqa: E402


LABELS = ["person", "dog", "cat", "car", "tree", "traffic light", "table", "chair", "cup", "shirt"]


def synthetic_records(num_images: int, num_regions: int, feature_dim: int, seed: int = 0):
    """`num_images` records of `num_regions` regions; arrays are drawn from a small pool to write fast."""
    rng = np.random.default_rng(seed)
    pool = 64
    features = rng.standard_normal((pool, num_regions, feature_dim), dtype=np.float32)
    corners = rng.uniform(0, 300, size=(pool, num_regions, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(1, 300, size=(pool, num_regions, 2))], -1)
    scores = rng.uniform(0, 1, size=(pool, num_regions)).astype(np.float32)
    labels = [[LABELS[(i + j) % len(LABELS)] for j in range(num_regions)] for i in range(pool)]
    for index in range(num_images):
        k = index % pool
        yield RegionFeatures(features[k], boxes[k], 640, 640, labels[k], scores[k], f"{index:012d}")


CHILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from processing.region_store import RegionStore

    def rss():
        fields = {}
        with open("/proc/self/status") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "RssAnon", "RssFile"):
                    fields[name] = int(value.split()[0]) / 1024  # MiB
        return {"total": fields["VmRSS"], "anon": fields["RssAnon"], "file": fields["RssFile"]}

    path, reads = sys.argv[2], int(sys.argv[3])
    result = {"rss_imported": rss()}
    start = time.perf_counter()
    store = RegionStore.load(path)
    result["open_s"] = time.perf_counter() - start
    result["rss_opened"] = rss()
    rows = np.random.default_rng(0).integers(0, len(store), size=reads)
    store[int(rows[0])]  # warm-up
    start = time.perf_counter()
    regions = 0
    for row in rows:
        regions += store[int(row)].num_regions
    elapsed = time.perf_counter() - start
    result.update(reads=reads, regions=regions, reads_per_s=reads / elapsed, rss_read=rss())
    start = time.perf_counter()
    store[f"{len(store) - 1:012d}"]
    result["first_id_lookup_s"] = time.perf_counter() - start
    result["rss_id_index"] = rss()
    result["num_images"] = len(store)
    result["num_shards"] = store.num_shards
    print(json.dumps(result))
    """
)


# Control: the same number of random reads of the same size straight from `mmap`ed store files, no Arrow, no
# datasets. Shows how many file-backed pages the kernel maps for that access pattern by itself.
CONTROL = textwrap.dedent(
    """
    import json, mmap, sys
    from pathlib import Path
    import numpy as np

    def rss_file():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("RssFile"))

    path, reads, read_bytes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    maps = []
    for file in sorted(path.rglob("*.arrow")):
        with open(file, "rb") as handle:
            maps.append(np.frombuffer(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ), dtype=np.uint8))
    before = rss_file()
    rng = np.random.default_rng(0)
    total = 0
    for index in rng.integers(0, len(maps), size=reads):
        array = maps[index]
        start = int(rng.integers(0, max(1, len(array) - read_bytes)))
        total += int(array[start : start + read_bytes : 4096].sum())
    print(json.dumps({"rss_file_growth": rss_file() - before}))
    """
)


def run_child(code: str, *args) -> dict:
    output = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"},
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000], help="Store sizes (images).")
    parser.add_argument("--regions", type=int, default=50, help="Regions per image.")
    parser.add_argument("--feature-dim", type=int, default=256, help="Feature width of the size comparison.")
    parser.add_argument(
        "--reference-dim",
        type=int,
        default=2048,
        help="Width of an extra store of the smallest size (0 to skip).",
    )
    parser.add_argument("--reads", type=int, default=10_000, help="Random reads per store.")
    parser.add_argument(
        "--dir", default=None, help="Where to write the stores (default: a temporary folder)."
    )
    args = parser.parse_args()

    runs = [(size, args.feature_dim) for size in args.sizes]
    if args.reference_dim and args.reference_dim != args.feature_dim:
        runs.insert(0, (min(args.sizes), args.reference_dim))
    root = Path(tempfile.mkdtemp(prefix="region-store-bench-", dir=args.dir))
    print(
        f"region store benchmark: {args.regions} regions per image, float16 features, {args.reads} random "
        f"reads (store[i] -> RegionFeatures, float32), one fresh process per store, warm page cache"
    )
    try:
        for size, dim in runs:
            path = root / f"store-{size}-{dim}"
            start = time.perf_counter()
            store = RegionStore.from_records(
                synthetic_records(size, args.regions, dim), path, feature_dtype="float16", shard_size=1024
            )
            write_s = time.perf_counter() - start
            disk = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
            del store
            result = run_child(CHILD, REPO_ROOT, path, args.reads)
            control = run_child(CONTROL, path, args.reads, args.regions * dim * 2)
            imported, opened, read = result["rss_imported"], result["rss_opened"], result["rss_read"]
            indexed = result["rss_id_index"]
            print(
                f"\n{size:>7} images x {args.regions} x {dim}-d: {disk / 2**30:.2f} GiB on disk in "
                f"{result['num_shards']} shards (written in {write_s:.0f} s)\n"
                f"  open: {result['open_s'] * 1000:.0f} ms   random reads: {result['reads_per_s']:,.0f} records/s\n"
                f"  RSS MiB (total / anon / file): after imports {imported['total']:.0f} / {imported['anon']:.0f} / "
                f"{imported['file']:.0f}; after open {opened['total']:.0f} / {opened['anon']:.0f} / "
                f"{opened['file']:.0f}; after {args.reads} reads {read['total']:.0f} / {read['anon']:.0f} / "
                f"{read['file']:.0f}\n"
                f"  growth over the imports: open +{opened['anon'] - imported['anon']:.1f} MiB anon, "
                f"+{opened['file'] - imported['file']:.1f} MiB file; reads +{read['anon'] - imported['anon']:.1f} "
                f"MiB anon, +{read['file'] - imported['file']:.1f} MiB file\n"
                f"  first lookup by image id: {result['first_id_lookup_s'] * 1000:.0f} ms, "
                f"+{indexed['anon'] - read['anon']:.1f} MiB anon (the id -> row dictionary)\n"
                f"  control, {args.reads} random {args.regions * dim * 2 // 1024} KiB reads of plain mmaps of the same "
                f"files: +{control['rss_file_growth']:.1f} MiB file"
            )
            shutil.rmtree(path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
