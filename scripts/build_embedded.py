"""Rebuild the embedded MedMNIST subsets in src/qmedgen/data/embedded/ from the official 28x28 files.

    python scripts/build_embedded.py --source ../shared/data/medmnist

For each dataset (retinamnist, bloodmnist) and split (train: 100 images, test: 200 images) it draws a stratified
sample with numpy.random.default_rng(SEED): every class first gets min(FLOOR, available) images, the rest is shared
in proportion to class frequency (largest remainder). Images are written losslessly as one PNG mosaic per split
(20 tiles per row, in ascending source-index order) plus a JSON manifest (labels, source indices, SHA-256 of each PNG,
source file MD5). The official file's MD5 is checked first, so the selected pixels, labels and indices are
reproducible (the PNG bytes too, given the same Pillow/zlib).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from qmedgen.data.catalog import MEDMNIST_CITATION, medmnist_spec
from qmedgen.data.medmnist import read_npz

SEED = 20260101
FLOOR = 8
COLUMNS = 20
PLAN = {"retinamnist": {"train": 100, "test": 200}, "bloodmnist": {"train": 100, "test": 200}}
OUT = Path(__file__).resolve().parents[1] / "src" / "qmedgen" / "data" / "embedded"


def allocate(counts: np.ndarray, n: int, floor: int) -> np.ndarray:
    """Per-class sample sizes: a floor for every class, the remainder proportional to frequency."""
    take = np.minimum(counts, floor)
    left = n - int(take.sum())
    spare = counts - take
    quota = left * spare / spare.sum()
    take = take + np.floor(quota).astype(np.int64)
    order = np.lexsort((np.arange(len(counts)), -counts, -(quota - np.floor(quota))))
    i = 0
    while take.sum() < n:
        c = order[i % len(order)]
        if take[c] < counts[c]:
            take[c] += 1
        i += 1
    return take


def mosaic(images: np.ndarray, columns: int) -> np.ndarray:
    n, s = len(images), images.shape[1]
    rows = -(-n // columns)
    padded = np.zeros((rows * columns, s, s, 3), dtype=np.uint8)
    padded[:n] = images
    return padded.reshape(rows, columns, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(rows * s, columns * s, 3)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def build(name: str, source_dir: Path, out_dir: Path) -> dict:
    spec = medmnist_spec(name)
    src = source_dir / spec.filename(28)
    arrays = read_npz(src, spec, 28, ("train", "test"), verify=True)
    rng = np.random.default_rng(SEED)
    manifest = {
        "dataset": name, "size": 28, "license": spec.license, "citation": MEDMNIST_CITATION,
        "source_file": spec.filename(28), "source_md5": spec.md5[28], "source_url": spec.url(28),
        "seed": SEED, "floor_per_class": FLOOR, "builder": "scripts/build_embedded.py", "splits": {},
    }
    for split, n in PLAN[name].items():
        images, labels = arrays[split]
        counts = np.bincount(labels, minlength=spec.n_classes)
        take = allocate(counts, n, FLOOR)
        chosen = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(take)]))
        data = png_bytes(mosaic(images[chosen], COLUMNS))
        fname = f"{name}_28_{split}.png"
        (out_dir / fname).write_bytes(data)
        manifest["splits"][split] = {
            "n": int(n), "columns": COLUMNS, "image_file": fname, "sha256": hashlib.sha256(data).hexdigest(),
            "class_counts": take.tolist(), "labels": labels[chosen].tolist(), "source_indices": chosen.tolist(),
        }
        print(f"{name} {split}: {n} images, per class {take.tolist()}, {fname} {len(data)} bytes")
    (out_dir / f"{name}_28.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with retinamnist.npz and bloodmnist.npz")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in PLAN:
        build(name, args.source, args.out)


if __name__ == "__main__":
    main()
