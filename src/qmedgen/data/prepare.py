"""Arrange ISIC2019 and ODIR-5k images into class folders (``OUT/<k>_<CODE>/<file>``) for ``folder:OUT``.

The user's originals are never moved, renamed, modified or deleted: each output file is a hard link to the original
(default ``auto``: hard link, falling back to a copy across file systems), a copy (``copy``) or a symbolic link
(``symlink``). Hard links share content with the original, and qmedgen never writes to dataset files. Existing output
files are kept only if they already hold the same content; anything else is an error, never an overwrite.

Class folders are prefixed with the official class order (``0_MEL``, ``1_NV``, ...; ``0_N``, ``1_D``, ...) so that
the sorted folder names used by the image-folder loader reproduce the datasets' usual label ids. Folders are only
created for classes that receive images. A ``prepare_manifest.json`` in OUT records the convention and counts.

ISIC2019 (``ISIC_2019_Training_GroundTruth.csv``): one-hot columns MEL, NV, BCC, AK, BKL, DF, VASC, SCC (UNK
optional); each image goes to its single positive class; rows with zero or several positives are skipped and counted.

ODIR-5k (``ODIR-5K_Training_Annotations(Updated)_V2.xlsx`` or a CSV export): labels N, D, G, C, A, H, M, O are given
per *patient* (both eyes). Convention (``multi_label="skip"``, default): keep patients with exactly one positive
label; both fundus images go to that class, except that for an abnormal class an eye whose diagnostic keywords say
"normal fundus" is skipped (it is the patient's healthy eye). ``multi_label="first"`` instead assigns multi-label
patients to their first positive label in the order N, D, G, C, A, H, M, O. Per-image tables (a ``filename`` column
with the N..O columns, as in common CSV exports) are also accepted.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from pathlib import Path

from qmedgen.data.tables import read_table
from qmedgen.errors import DataError

ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
ODIR_CLASSES = ("N", "D", "G", "C", "A", "H", "M", "O")
LINK_MODES = ("auto", "link", "copy", "symlink")


def place_file(src: Path, dst: Path, mode: str = "auto") -> str:
    """Make ``dst`` refer to ``src`` without touching ``src``; returns the method used ('link', 'copy', ...)."""
    if mode not in LINK_MODES:
        raise DataError(f"unknown link mode {mode!r}; expected one of {', '.join(LINK_MODES)}")
    if dst.exists() or dst.is_symlink():
        if dst.exists() and (os.path.samefile(src, dst) or filecmp.cmp(src, dst, shallow=False)):
            return "existing"
        raise DataError(f"{dst}: already exists with different content; refusing to overwrite (choose an empty --out)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(src.resolve(), dst)
        return "symlink"
    if mode in ("auto", "link"):
        try:
            os.link(src, dst)
            return "link"
        except OSError as exc:
            if mode == "link":
                raise DataError(f"cannot hard-link {src} -> {dst} ({exc}); use --copy or --symlink") from exc
    shutil.copy2(src, dst)
    return "copy"


def _find_image(images: Path, stem: str, suffixes=(".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")) -> Path | None:
    p = images / stem
    if p.suffix and p.is_file():
        return p
    for s in suffixes:
        q = images / f"{stem}{s}"
        if q.is_file():
            return q
    return None


def _check_dirs(images: Path, out: Path) -> None:
    if not images.is_dir():
        raise DataError(f"{images}: image directory not found")
    if out.resolve() == images.resolve() or images.resolve() in out.resolve().parents:
        raise DataError(f"--out {out} must not be the image directory {images} or inside it")


def _positive(value: str) -> bool:
    try:
        return float(value) >= 0.5
    except ValueError:
        return value.strip().lower() in ("true", "yes")


def _finish(out: Path, dataset: str, placements: list[tuple[Path, Path]], mode: str, summary: dict,
            missing: list[str], allow_missing: bool) -> dict:
    if missing and not allow_missing:
        raise DataError(
            f"{len(missing)} image(s) listed in the metadata were not found in the image directory, e.g. "
            f"{missing[:5]}; check --images, or pass --allow-missing to skip them"
        )
    methods: dict[str, int] = {}
    from tqdm.auto import tqdm

    for src, dst in tqdm(placements, desc=f"prepare {dataset}", unit="img", disable=len(placements) < 500):
        m = place_file(src, dst, mode)
        methods[m] = methods.get(m, 0) + 1
    summary.update({"dataset": dataset, "mode": mode, "methods": methods, "missing": len(missing),
                    "missing_examples": missing[:20]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "prepare_manifest.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def prepare_isic2019(images: str | os.PathLike, metadata: str | os.PathLike, out: str | os.PathLike,
                     mode: str = "auto", allow_missing: bool = False) -> dict:
    """ISIC2019 ground-truth CSV (one-hot MEL..SCC[,UNK]) -> ``OUT/<k>_<CODE>/<image>.jpg``. Returns a summary."""
    images, out, metadata = Path(images), Path(out), Path(metadata)
    _check_dirs(images, out)
    rows = read_table(metadata)
    cols = [c for c in ISIC_CLASSES if c in rows[0]]
    missing_cols = [c for c in ISIC_CLASSES[:8] if c not in rows[0]] + ([] if "image" in rows[0] else ["image"])
    if missing_cols:
        raise DataError(
            f"{metadata}: missing column(s) {missing_cols}; expected the ISIC2019 ground truth with columns "
            f"image,{','.join(ISIC_CLASSES[:8])}[,UNK] (found {list(rows[0])})"
        )
    placements, missing, counts, skipped = [], [], {c: 0 for c in cols}, 0
    for row in rows:
        pos = [c for c in cols if _positive(row[c])]
        if len(pos) != 1:
            skipped += 1
            continue
        src = _find_image(images, row["image"])
        if src is None:
            missing.append(row["image"])
            continue
        folder = f"{ISIC_CLASSES.index(pos[0])}_{pos[0]}"
        placements.append((src, out / folder / src.name))
        counts[pos[0]] += 1
    summary = {"convention": "single positive one-hot column per image; other rows skipped",
               "class_counts": {c: n for c, n in counts.items() if n}, "skipped_not_single_label": skipped}
    return _finish(out, "isic2019", placements, mode, summary, missing, allow_missing)


def prepare_odir5k(images: str | os.PathLike, metadata: str | os.PathLike, out: str | os.PathLike,
                   mode: str = "auto", multi_label: str = "skip", allow_missing: bool = False) -> dict:
    """ODIR-5k annotations (.xlsx or CSV) -> ``OUT/<k>_<CODE>/<file>.jpg`` (convention in the module docstring)."""
    if multi_label not in ("skip", "first"):
        raise DataError(f"multi_label must be 'skip' or 'first', got {multi_label!r}")
    images, out, metadata = Path(images), Path(out), Path(metadata)
    _check_dirs(images, out)
    rows = read_table(metadata)
    header = set(rows[0])
    lacking = [c for c in ODIR_CLASSES if c not in header]
    per_patient = {"Left-Fundus", "Right-Fundus"} <= header
    if lacking or not (per_patient or "filename" in header):
        raise DataError(
            f"{metadata}: expected ODIR-5k annotations with columns N,D,G,C,A,H,M,O and either Left-Fundus/"
            f"Right-Fundus (per patient) or filename (per image); missing {lacking or ['Left-Fundus/filename']}"
        )
    placements, missing, seen = [], [], set()
    counts = {c: 0 for c in ODIR_CLASSES}
    skipped_multi = skipped_normal_eye = 0
    for row in rows:
        pos = [c for c in ODIR_CLASSES if _positive(row[c])]
        if not pos:
            continue
        if len(pos) > 1 and multi_label == "skip":
            skipped_multi += 1
            continue
        label = pos[0]
        eyes = ([(row["Left-Fundus"], row.get("Left-Diagnostic Keywords", "")),
                 (row["Right-Fundus"], row.get("Right-Diagnostic Keywords", ""))]
                if per_patient else [(row["filename"], "")])
        for fname, keywords in eyes:
            if not fname or fname in seen:
                continue
            seen.add(fname)
            if label != "N" and "normal fundus" in keywords.lower():
                skipped_normal_eye += 1
                continue
            src = _find_image(images, fname)
            if src is None:
                missing.append(fname)
                continue
            placements.append((src, out / f"{ODIR_CLASSES.index(label)}_{label}" / src.name))
            counts[label] += 1
    summary = {
        "convention": ("patient labels N,D,G,C,A,H,M,O; " + (
            "patients with exactly one positive label only" if multi_label == "skip"
            else "multi-label patients assigned to their first positive label in N,D,G,C,A,H,M,O order")
            + "; for abnormal classes, eyes whose keywords say 'normal fundus' are skipped"),
        "class_counts": {c: n for c, n in counts.items() if n},
        "skipped_multi_label_patients": skipped_multi, "skipped_normal_eyes": skipped_normal_eye,
    }
    return _finish(out, "odir5k", placements, mode, summary, missing, allow_missing)
