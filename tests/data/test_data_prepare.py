"""`qmedgen data prepare` for ISIC2019 and ODIR-5k on tiny synthetic directories; originals must stay untouched."""

from __future__ import annotations

import json
import zipfile
from xml.sax.saxutils import escape

import numpy as np
import pytest
from PIL import Image

from qmedgen.cli import main
from qmedgen.data import load_dataset
from qmedgen.data.tables import read_table
from qmedgen.errors import DataError


def _jpg(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((30, 40, 3), value, np.uint8)).save(path, quality=95)
    return path


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


ISIC_HEADER = "image,MEL,NV,BCC,AK,BKL,DF,VASC,SCC,UNK"


def _isic(tmp_path):
    images = tmp_path / "ISIC_2019_Training_Input"
    rows = [ISIC_HEADER]
    onehots = {"ISIC_0000000": "MEL", "ISIC_0000001": "NV", "ISIC_0000002": "NV", "ISIC_0000003": "SCC"}
    for i, (name, cls) in enumerate(onehots.items()):
        _jpg(images / f"{name}.jpg", 40 * i)
        rows.append(name + "," + ",".join("1.0" if c == cls else "0.0" for c in ISIC_HEADER.split(",")[1:]))
    _jpg(images / "ISIC_0000004.jpg", 7)
    rows.append("ISIC_0000004,1.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0")  # two positives: skipped
    meta = tmp_path / "ISIC_2019_Training_GroundTruth.csv"
    meta.write_text("\n".join(rows) + "\n")
    return images, meta


@pytest.mark.parametrize("flag", [None, "--copy", "--symlink", "--link"])
def test_isic2019_class_folders_and_originals_untouched(tmp_path, capsys, flag):
    images, meta = _isic(tmp_path)
    before = _snapshot(images)
    out = tmp_path / "isic_folders"
    argv = ["data", "prepare", "isic2019", "--images", str(images), "--metadata", str(meta), "--out", str(out)]
    assert main(argv + ([flag] if flag else [])) == 0
    assert "4 images" in capsys.readouterr().out
    assert _snapshot(images) == before  # nothing moved, renamed or changed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["0_MEL", "1_NV", "7_SCC"]
    placed = out / "1_NV" / "ISIC_0000001.jpg"
    if flag == "--symlink":
        assert placed.is_symlink() and placed.resolve() == (images / "ISIC_0000001.jpg").resolve()
    elif flag == "--copy":
        assert not placed.samefile(images / "ISIC_0000001.jpg") and placed.read_bytes() == before["ISIC_0000001.jpg"]
    else:
        assert placed.samefile(images / "ISIC_0000001.jpg")  # hard link on the same file system
    manifest = json.loads((out / "prepare_manifest.json").read_text())
    assert manifest["class_counts"] == {"MEL": 1, "NV": 2, "SCC": 1} and manifest["skipped_not_single_label"] == 1
    ds = load_dataset(f"folder:{out}", size=16)
    assert ds.info.class_names == ["0_MEL", "1_NV", "7_SCC"] and ds.labels.tolist() == [0, 1, 1, 2]
    assert main(argv + ([flag] if flag else [])) == 0  # re-running is harmless


def test_isic2019_errors(tmp_path, capsys):
    images, meta = _isic(tmp_path)
    (images / "ISIC_0000002.jpg").unlink()
    argv = ["data", "prepare", "isic2019", "--images", str(images), "--metadata", str(meta), "--out",
            str(tmp_path / "o")]
    assert main(argv) == 2
    assert "ISIC_0000002" in capsys.readouterr().err
    assert main([*argv, "--allow-missing"]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("image,MEL\nx,1\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['NV'"):
        from qmedgen.data.prepare import prepare_isic2019

        prepare_isic2019(images, bad, tmp_path / "o2")
    with pytest.raises(DataError, match="must not be the image directory"):
        prepare_isic2019(images, meta, images / "sub")
    out = tmp_path / "o3"
    _jpg(out / "1_NV" / "ISIC_0000001.jpg", 255)  # different content already there
    with pytest.raises(DataError, match="refusing to overwrite"):
        prepare_isic2019(images, meta, out, mode="copy", allow_missing=True)


ODIR_HEADER = ["ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords",
               "Right-Diagnostic Keywords", "N", "D", "G", "C", "A", "H", "M", "O"]
ODIR_ROWS = [
    [0, 69, "Female", "0_left.jpg", "0_right.jpg", "cataract", "normal fundus", 0, 0, 0, 1, 0, 0, 0, 0],
    [1, 57, "Male", "1_left.jpg", "1_right.jpg", "normal fundus", "normal fundus", 1, 0, 0, 0, 0, 0, 0, 0],
    [2, 42, "Male", "2_left.jpg", "2_right.jpg", "moderate non proliferative retinopathy", "laser spot", 0, 1, 0, 0,
     0, 0, 0, 1],
    [3, 66, "Female", "3_left.jpg", "3_right.jpg", "glaucoma", "glaucoma", 0, 0, 1, 0, 0, 0, 0, 0],
]


def _write_xlsx(path, rows):
    """A minimal .xlsx (shared strings + numbers), as Excel writes them."""
    strings: list[str] = []
    cells_xml = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if isinstance(value, str):
                if value not in strings:
                    strings.append(value)
                cells.append(f'<c r="{ref}" t="s"><v>{strings.index(value)}</v></c>')
            else:
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        cells_xml.append(f'<row r="{r}">{"".join(cells)}</row>')
    main_ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel_ns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/workbook.xml", f'<workbook xmlns="{main_ns}" xmlns:r="{rel_ns}"><sheets>'
                   f'<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels",
                   '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   '<Relationship Id="rId1" Target="worksheets/sheet1.xml" Type="x"/></Relationships>')
        z.writestr("xl/sharedStrings.xml", f'<sst xmlns="{main_ns}">'
                   + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings) + "</sst>")
        z.writestr("xl/worksheets/sheet1.xml", f'<worksheet xmlns="{main_ns}"><sheetData>{"".join(cells_xml)}'
                   "</sheetData></worksheet>")
    return path


def _odir_images(tmp_path):
    images = tmp_path / "ODIR-5K_Training_Dataset"
    for row in ODIR_ROWS:
        _jpg(images / row[3], 10 + row[0])
        _jpg(images / row[4], 100 + row[0])
    return images


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_odir5k_convention(tmp_path, fmt, capsys):
    images = _odir_images(tmp_path)
    before = _snapshot(images)
    if fmt == "xlsx":
        meta = _write_xlsx(tmp_path / "data.xlsx", [ODIR_HEADER, *ODIR_ROWS])
    else:
        meta = tmp_path / "data.csv"
        meta.write_text("\n".join(",".join(str(v) for v in r) for r in [ODIR_HEADER, *ODIR_ROWS]) + "\n")
    assert read_table(meta)[0]["Left-Fundus"] == "0_left.jpg"
    out = tmp_path / "odir"
    assert main(["data", "prepare", "odir5k", "--images", str(images), "--metadata", str(meta),
                 "--out", str(out)]) == 0
    assert _snapshot(images) == before
    got = {p.parent.name + "/" + p.name for p in out.rglob("*.jpg")}
    # patient 0 (cataract): the right eye is "normal fundus" -> skipped; patient 2 has D and O -> skipped
    assert got == {"3_C/0_left.jpg", "0_N/1_left.jpg", "0_N/1_right.jpg", "2_G/3_left.jpg", "2_G/3_right.jpg"}
    manifest = json.loads((out / "prepare_manifest.json").read_text())
    assert manifest["skipped_multi_label_patients"] == 1 and manifest["skipped_normal_eyes"] == 1
    out2 = tmp_path / "odir_first"
    assert main(["data", "prepare", "odir5k", "--images", str(images), "--metadata", str(meta),
                 "--out", str(out2), "--multi-label", "first", "--copy"]) == 0
    assert (out2 / "1_D" / "2_left.jpg").is_file() and (out2 / "1_D" / "2_right.jpg").is_file()


def test_odir5k_bad_metadata(tmp_path):
    from qmedgen.data.prepare import prepare_odir5k

    images = _odir_images(tmp_path)
    meta = tmp_path / "m.csv"
    meta.write_text("ID,N,D\n1,1,0\n")
    with pytest.raises(DataError, match="N,D,G,C,A,H,M,O"):
        prepare_odir5k(images, meta, tmp_path / "o")
    notxlsx = tmp_path / "m.xlsx"
    notxlsx.write_text("plain text")
    with pytest.raises(DataError, match=r"cannot read as \.xlsx"):
        prepare_odir5k(images, notxlsx, tmp_path / "o")
