import json

import numpy as np
import pytest
import torch

from qmedgen.cli import main
from qmedgen.errors import ConfigError
from qmedgen.hardware import commands
from qmedgen.hardware.inference import export_circuits, generate, image_deltas, infer, make_executor, robustness, ssim

pytest.importorskip("qiskit_aer")


def test_ssim_and_deltas_closed_form():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
    assert np.allclose(ssim(a, a), 1.0)
    d = image_deltas(a, a)
    assert d["pixel_mse"] == 0 and d["psnr_db"] is None and d["ssim_mean"] == pytest.approx(1.0)
    b = np.clip(a.astype(int) + 16, 0, 255).astype(np.uint8)
    d = image_deltas(a, b)
    assert 0 < d["pixel_mse"] <= (16 / 255) ** 2 + 1e-12 and d["ssim_mean"] < 1


def test_generate_is_reproducible_and_mode_changes_images(tiny_trainer):
    labels = torch.tensor([0, 0, 1, 1])
    a = generate(tiny_trainer, labels, None, seed=5)
    b = generate(tiny_trainer, labels, make_executor("exact"), seed=5)
    c = generate(tiny_trainer, labels, make_executor("shots", shots=16), seed=5)
    assert a.shape == (4, 8, 8, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_make_executor_validates():
    with pytest.raises(ConfigError, match="needs --backend"):
        make_executor("aer")
    with pytest.raises(ConfigError, match="fake_"):
        make_executor("aer", "ibm_marrakesh")
    with pytest.raises(ConfigError, match="unknown inference mode"):
        make_executor("gpu")


def test_infer_writes_samples_and_errors(tiny_trainer, tmp_path):
    info = infer(tiny_trainer, "aer", tmp_path / "aer", backend="fake_manila", shots=256, n_per_class=2, progress=False)
    assert (tmp_path / "aer" / "samples.npz").is_file()
    assert (tmp_path / "aer" / "class_1" / "00001.png").is_file()
    saved = json.loads((tmp_path / "aer" / "inference.json").read_text())
    assert saved["jobs"] == 1 and saved["bindings"] == 4 * 2  # 4 images x K=2 circuits in ONE job
    assert saved["expval_errors"]["expval_rmse"] > 0
    assert info["n_images"] == 4


def test_robustness_table(tiny_trainer, tmp_path):
    res = robustness(tiny_trainer, tmp_path, backends=["fake_manila"], shots=[32, 2048], n_per_class=3,
                     progress=False)
    rows = {(r["device"], r["shots"]): r for r in res["rows"]}
    assert set(rows) == {("ideal", 32), ("ideal", 2048), ("fake_manila", 32), ("fake_manila", 2048)}
    assert rows[("ideal", 2048)]["expval_rmse"] < rows[("ideal", 32)]["expval_rmse"]
    for name in ("robustness.json", "robustness.md", "robustness.png", "grid_exact.png", "grid_fake_manila_32.png"):
        assert (tmp_path / name).is_file()
    assert "fake_manila" in (tmp_path / "robustness.md").read_text()


def test_export_and_cli(tiny_trainer, tmp_path, monkeypatch):
    summary = export_circuits(tiny_trainer, "fake_manila", tmp_path / "exp")
    assert len(summary["circuits"]) == 2  # K = 2 sub-generator circuits
    c = summary["circuits"][0]
    assert c["transpiled"]["two_qubit_gates"] >= c["logical"]["two_qubit_gates"] >= 2
    text = (tmp_path / "exp" / c["files"][1]).read_text()
    assert text.startswith("OPENQASM 3")
    monkeypatch.setattr(commands, "_load", lambda args: tiny_trainer)
    out = tmp_path / "cli"
    assert main(["hardware", "export", "RUN", "--backend", "fake_manila", "--out", str(out)]) == 0
    assert (out / "export.json").is_file()
    assert main(["hardware", "infer", "RUN", "--mode", "shots", "--shots", "64", "--n-per-class", "1",
                 "--sample-opt", "steps=5", "--sample-opt", "sampler=ddim", "--out", str(tmp_path / "inf")]) == 0
    assert (tmp_path / "inf" / "samples.npz").is_file()
    assert tiny_trainer.last_opts == {"steps": 5, "sampler": "ddim"}
    assert main(["hardware", "infer", "RUN", "--mode", "aer", "--out", str(tmp_path / "x")]) == 2  # no --backend
    assert main(["hardware", "robustness", "RUN", "--backends", "ibm_x", "--out", str(tmp_path)]) == 2


def test_robustness_kid_column_with_evaluation_extractor(tiny_trainer, tmp_path, monkeypatch):
    extractors = pytest.importorskip("qmedgen.evaluate.extractors")
    features = pytest.importorskip("qmedgen.evaluate.features")
    flat = features.Extractor(torch.nn.Flatten(), device="cpu")  # pixel features through the real interface
    monkeypatch.setattr(extractors, "load_extractor", lambda spec, **kw: flat)
    res = robustness(tiny_trainer, tmp_path, backends=[], shots=[16], n_per_class=6, kid_extractor="pixels-test",
                     progress=False)
    assert isinstance(res["rows"][0]["kid_vs_exact"], float)
    assert "KID vs exact" in (tmp_path / "robustness.md").read_text()
