"""`qmedgen data ...` through qmedgen.cli.main."""

from __future__ import annotations

import pytest
from PIL import Image

from qmedgen.cli import main


def test_list_shows_every_dataset(capsys, tmp_path, fake_medmnist):
    fake_medmnist(tmp_path / "medmnist" / "octmnist_64.npz", size=64, channels=1)
    assert main(["data", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("embedded-retinamnist", "embedded-bloodmnist", "pathmnist", "chestmnist", "organsmnist", "mnist"):
        assert name in out
    octline = next(line for line in out.splitlines() if line.startswith("octmnist"))
    assert "64px" in octline and str(tmp_path) in out


def test_info_embedded_counts(capsys):
    assert main(["data", "info", "embedded-retinamnist"]) == 0
    out = capsys.readouterr().out
    assert "ordinal-regression" in out and "channels: 3" in out
    total = next(line for line in out.splitlines() if line.startswith("total")).split()
    assert total[1:] == ["100", "200"]


def test_info_reports_md5_status(capsys, tmp_path, fake_medmnist):
    fake_medmnist(tmp_path / "retinamnist.npz")
    assert main(["data", "info", "retinamnist", "--root", str(tmp_path), "--split", "train"]) == 0
    out = capsys.readouterr().out
    assert "MISMATCH (official bd4c0672f1bba3e3a89f0e4e876791e4)" in out and "total  6" in out


def test_info_real_file(capsys, shared_data):
    if not (shared_data / "medmnist" / "bloodmnist.npz").is_file():
        pytest.skip("bloodmnist.npz absent")
    assert main(["data", "info", "bloodmnist", "--root", str(shared_data)]) == 0
    out = capsys.readouterr().out
    assert "ok (official)" in out and "11959" in out and "3421" in out


def test_errors_are_short_and_exit_2(capsys):
    assert main(["data", "info", "retinamnst"]) == 2
    assert "Did you mean 'retinamnist'" in capsys.readouterr().err
    assert main(["data", "info", "pathmnist"]) == 2
    err = capsys.readouterr().err
    assert "pathmnist.npz" in err and "Traceback" not in err
    assert main(["data", "download", "folder:x"]) == 2


def test_preview_grid(tmp_path, capsys):
    out = tmp_path / "sub" / "grid.png"
    assert main(["data", "preview", "embedded-bloodmnist", "--out", str(out), "--n-per-class", "3"]) == 0
    with Image.open(out) as img:
        w, h = img.size
    assert h >= 8 * 56 and w >= 3 * 56  # 8 labelled rows of 3 enlarged tiles
    assert "8 classes" in capsys.readouterr().out


def test_download_embedded_needs_nothing(capsys):
    assert main(["data", "download", "embedded-retinamnist"]) == 0
    assert "ships inside qmedgen" in capsys.readouterr().out


def test_download_skips_present_official_file(capsys, shared_data):
    if not (shared_data / "medmnist" / "retinamnist.npz").is_file():
        pytest.skip("retinamnist.npz absent")
    assert main(["data", "download", "retinamnist", "--root", str(shared_data)]) == 0
    assert "already present" in capsys.readouterr().out


def test_download_failure_leaves_nothing(tmp_path, monkeypatch):
    import urllib.request

    from qmedgen.data.download import download_file
    from qmedgen.errors import DataError

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="could not download"):
        download_file("https://example.invalid/x.npz", tmp_path / "x.npz", "0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_checks_md5_and_writes_atomically(tmp_path):
    from qmedgen.data.download import download_file
    from qmedgen.errors import DataError

    src = tmp_path / "server" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(b"payload")
    dest = tmp_path / "data" / "f.bin"
    with pytest.raises(DataError, match=r"expected 0{32}"):
        download_file(src.as_uri(), dest, "0" * 32, progress=False)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    from qmedgen.data.integrity import md5_bytes

    assert download_file(src.as_uri(), dest, md5_bytes(b"payload"), progress=False).read_bytes() == b"payload"


def test_load_dataset_download_true(tmp_path, shared_data, monkeypatch):
    server = shared_data / "medmnist"
    if not (server / "retinamnist.npz").is_file():
        pytest.skip("retinamnist.npz absent")
    from qmedgen.data import load_dataset
    from qmedgen.data.catalog import MedMNISTSpec

    monkeypatch.setattr(MedMNISTSpec, "url", lambda self, size=28: (server / self.filename(size)).as_uri())
    ds = load_dataset("retinamnist", split="val", root=tmp_path / "mine", download=True)
    assert len(ds) == 120 and (tmp_path / "mine" / "medmnist" / "retinamnist.npz").is_file()
