"""Read metadata tables (CSV or .xlsx) as lists of string dicts, without pandas or openpyxl.

The .xlsx reader understands what annotation spreadsheets use: the first worksheet, shared strings, inline strings
and numbers. Formulas are read as their cached values.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from qmedgen.errors import DataError

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
       "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
       "pr": "http://schemas.openxmlformats.org/package/2006/relationships"}


def read_table(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV (any common delimiter) or .xlsx file, keyed by the header row (stripped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metadata file not found")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        rows = _read_xlsx(path)
    else:
        rows = _read_csv(path)
    if not rows:
        raise DataError(f"{path}: empty table; expected a header row and one row per image")
    header = [h.strip() for h in rows[0]]
    out = []
    for r in rows[1:]:
        if not any(cell.strip() for cell in r):
            continue
        r = list(r) + [""] * (len(header) - len(r))
        out.append({h: r[i].strip() for i, h in enumerate(header) if h})
    return out


def _read_csv(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text CSV ({exc}); expected a CSV or .xlsx table") from exc
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return list(csv.reader(text.splitlines(), dialect))


def _col_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref).group(0)
    n = 0
    for ch in letters:
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def _read_xlsx(path: Path) -> list[list[str]]:
    try:
        with zipfile.ZipFile(path) as z:
            shared = []
            if "xl/sharedStrings.xml" in z.namelist():
                root = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
                tag = f"{{{_NS['m']}}}t"
                shared = ["".join(t.text or "" for t in si.iter(tag)) for si in root.findall("m:si", _NS)]
            sheet = _first_sheet(z)
            root = ElementTree.fromstring(z.read(sheet))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise DataError(f"{path}: cannot read as .xlsx ({exc}); expected an Excel workbook or a CSV file") from exc
    rows: list[list[str]] = []
    for row in root.iter(f"{{{_NS['m']}}}row"):
        cells: dict[int, str] = {}
        for i, c in enumerate(row.findall("m:c", _NS)):
            col = _col_index(c.get("r")) if c.get("r") else i
            kind = c.get("t")
            if kind == "inlineStr":
                value = "".join(t.text or "" for t in c.iter(f"{{{_NS['m']}}}t"))
            else:
                v = c.find("m:v", _NS)
                value = "" if v is None or v.text is None else v.text
                if kind == "s" and value:
                    value = shared[int(value)]
                elif kind is None and re.fullmatch(r"-?\d+\.0+", value):
                    value = value.split(".")[0]
            cells[col] = value
        if cells:
            rows.append([cells.get(j, "") for j in range(max(cells) + 1)])
    return rows


def _first_sheet(z: zipfile.ZipFile) -> str:
    wb = ElementTree.fromstring(z.read("xl/workbook.xml"))
    first = wb.find("m:sheets/m:sheet", _NS)
    if first is None:
        raise KeyError("no worksheet in xl/workbook.xml")
    rid = first.get(f"{{{_NS['r']}}}id")
    rels = ElementTree.fromstring(z.read("xl/_rels/workbook.xml.rels"))
    for rel in rels.findall("pr:Relationship", _NS):
        if rel.get("Id") == rid:
            target = rel.get("Target").lstrip("/")
            return target if target.startswith("xl/") else f"xl/{target}"
    raise KeyError(f"worksheet relation {rid}")
