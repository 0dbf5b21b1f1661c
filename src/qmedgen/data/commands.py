"""``qmedgen data ...``: list, info, prepare, preview and download datasets."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from qmedgen.data.catalog import MEDMNIST, MEDMNIST_SIZES, MNIST_FILES
from qmedgen.data.embedded import EMBEDDED
from qmedgen.errors import DataError


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="datasets: list, info, prepare, preview, download",
                                 description="Find, inspect, prepare and preview datasets.")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: (data.print_help(), 0)[1])

    p = sub.add_parser("list", help="known datasets and which files are present locally")
    p.add_argument("--root", help="data directory to search first (default: $QMEDGEN_DATA or ~/.qmedgen/data)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="task, channels, class counts per split and MD5 status")
    p.add_argument("name", help="dataset name, e.g. retinamnist, mnist, embedded-bloodmnist, folder:PATH")
    p.add_argument("--size", type=int, default=28, help="image size (MedMNIST: 28, 64, 128, 224)")
    p.add_argument("--split", default=None, help="one split only (train, val, test, all); default: every split")
    p.add_argument("--root", help="data directory to search first")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("prepare", help="arrange ISIC2019 / ODIR-5k images into class folders (originals untouched)")
    p.add_argument("dataset", choices=["isic2019", "odir5k"])
    p.add_argument("--images", required=True, help="folder with the original images")
    p.add_argument("--metadata", required=True, help="ISIC2019 ground-truth CSV, or ODIR-5k .xlsx / CSV")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per class)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--link", dest="mode", action="store_const", const="link", help="hard links only")
    mode.add_argument("--copy", dest="mode", action="store_const", const="copy", help="copy files")
    mode.add_argument("--symlink", dest="mode", action="store_const", const="symlink", help="symbolic links")
    p.set_defaults(mode="auto")
    p.add_argument("--multi-label", choices=["skip", "first"], default="skip",
                   help="ODIR-5k patients with several labels: skip them (default) or use the first label")
    p.add_argument("--allow-missing", action="store_true", help="skip metadata rows whose image file is absent")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("preview", help="save a grid of real images, one labelled row per class")
    p.add_argument("name")
    p.add_argument("--out", required=True, help="output image, e.g. grid.png")
    p.add_argument("--n-per-class", type=int, default=8)
    p.add_argument("--split", default="train")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--root")
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("download", help="download an official file (MedMNIST from Zenodo, MNIST), MD5-checked")
    p.add_argument("name")
    p.add_argument("--size", type=int, default=28, choices=MEDMNIST_SIZES)
    p.add_argument("--root", help="destination data directory (default: $QMEDGEN_DATA or ~/.qmedgen/data)")
    p.set_defaults(func=cmd_download)


def _fmt_table(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"


def cmd_list(args: argparse.Namespace) -> int:
    from qmedgen.data import medmnist, mnist
    from qmedgen.data.embedded import load_embedded

    rows = [["name", "task", "classes", "ch", "license", "local files"]]
    for name in EMBEDDED:
        ds = load_embedded(name, "all")
        rows.append([name, ds.info.task, str(ds.info.n_classes), "3", ds.info.license, "shipped (28px)"])
    for name, spec in MEDMNIST.items():
        found = [f"{s}px ({_mb(p)})" for s in MEDMNIST_SIZES if (p := medmnist.locate(name, s, args.root))]
        rows.append([name, spec.task, str(spec.n_classes), str(spec.n_channels), spec.license,
                     ", ".join(found) or "-"])
    paths = [mnist.locate(kind, args.root) for kind in MNIST_FILES]
    have = sum(p is not None for p in paths)
    rows.append(["mnist", "multi-class", "10", "1", "CC BY-SA 3.0",
                 f"{have}/4 idx files" + (f" ({paths[0].parent})" if paths[0] else "")])
    print(_fmt_table(rows))
    from qmedgen.data.locations import search_dirs

    print("\nsearched: " + ", ".join(str(d) for d in search_dirs(args.root, "medmnist")))
    print("also: folder:PATH (one sub-folder per class); get files with `qmedgen data download NAME`")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from qmedgen.data import medmnist
    from qmedgen.data.integrity import file_md5
    from qmedgen.data.loader import load_dataset

    name = args.name.strip()
    low = name.lower()
    if low in MEDMNIST:
        spec = MEDMNIST[low]
        path = medmnist.locate(low, args.size, args.root)
        if path is None:
            raise medmnist.missing_file_error(spec, args.size, args.root)
        md5 = file_md5(path)
        status = "ok (official)" if md5 == spec.md5[args.size] else f"MISMATCH (official {spec.md5[args.size]})"
        print(f"file: {path} ({_mb(path)})\nmd5: {md5} {status}")
        splits = [args.split] if args.split else ["train", "val", "test"]
        verify = False  # already reported above; still load to show what the file holds
    elif low in EMBEDDED or low == "mnist":
        splits = [args.split] if args.split else ["train", "test"]
        verify = True
    elif name.startswith("folder:"):
        from qmedgen.data.folder import scan_folder

        tree = scan_folder(name[len("folder:"):])
        splits = [args.split] if args.split else (["train"] if list(tree) == ["all"] else list(tree))
        verify = True
    else:
        load_dataset(name)  # raises the unknown-name error with suggestions
        return 2
    rows, info = None, None
    for split in splits:
        ds = load_dataset(name, split=split, size=args.size, root=args.root, verify=verify)
        info = ds.info
        if rows is None:
            head = list(info.class_names) + (["no finding"] if ds.labels.ndim == 2 else [])
            rows = [["class", *[str(s) for s in splits]]] + [[f"{k}: {c}"[:48]] for k, c in enumerate(head)]
            rows.append(["total"])
        counts = ds.class_counts()
        if ds.labels.ndim == 2:
            counts = np.append(counts, int((ds.labels.sum(axis=1) == 0).sum()))
        for k, n in enumerate(counts):
            rows[k + 1].append(str(int(n)))
        rows[-1].append(str(len(ds)))
    print(f"dataset: {info.name}\ntask: {info.task}\nchannels: {info.n_channels}\nsize: {info.size}\n"
          f"classes: {info.n_classes}\nlicense: {info.license or '-'}\nsource: {info.source}")
    if info.task == "multi-label":
        print("(multi-label: counts are positives per label; 'no finding' = rows without any positive)")
    print(_fmt_table(rows))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from qmedgen.data.prepare import prepare_isic2019, prepare_odir5k

    if args.dataset == "isic2019":
        summary = prepare_isic2019(args.images, args.metadata, args.out, mode=args.mode,
                                   allow_missing=args.allow_missing)
    else:
        summary = prepare_odir5k(args.images, args.metadata, args.out, mode=args.mode,
                                 multi_label=args.multi_label, allow_missing=args.allow_missing)
    total = sum(summary["class_counts"].values())
    print(f"{args.dataset}: {total} images into {args.out} ({summary['methods']})")
    for c, n in summary["class_counts"].items():
        print(f"  {c}: {n}")
    print(f"convention: {summary['convention']}\nmanifest: {Path(args.out) / 'prepare_manifest.json'}")
    print(f"load with: load_dataset('folder:{args.out}', size=64)")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from qmedgen.data.loader import load_dataset
    from qmedgen.data.preview import save_preview

    if args.n_per_class < 1:
        raise DataError(f"--n-per-class must be >= 1, got {args.n_per_class}")
    ds = load_dataset(args.name, split=args.split, size=args.size, root=args.root)
    out = save_preview(ds, args.out, n_per_class=args.n_per_class, seed=args.seed)
    print(f"wrote {out} ({ds.info.n_classes} classes x up to {args.n_per_class} images from {ds.info.split})")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from qmedgen.data import medmnist, mnist
    from qmedgen.data.integrity import file_md5

    low = args.name.lower()
    if low in EMBEDDED:
        print(f"{low} ships inside qmedgen; nothing to download")
        return 0
    if low == "mnist":
        for p in mnist.download_mnist(args.root):
            print(f"saved {p}")
        return 0
    if low not in MEDMNIST:
        raise DataError(f"cannot download {args.name!r}; downloadable: mnist, {', '.join(MEDMNIST)}")
    spec = MEDMNIST[low]
    existing = medmnist.locate(low, args.size, args.root)
    if existing is not None and file_md5(existing) == spec.md5[args.size]:
        print(f"{existing} is already present and matches the official MD5")
        return 0
    path = medmnist.download_medmnist(low, args.size, args.root)
    print(f"saved {path} (MD5 {spec.md5[args.size]} verified)")
    return 0
