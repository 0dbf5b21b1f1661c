"""HTML report: content from a real (toy) run, and rendering in headless Chromium when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from qmedgen.cli import main
from qmedgen.config import from_dict
from qmedgen.errors import UserError
from qmedgen.report.html import build_report, flatten_metrics, markdown_tables_to_html
from qmedgen.train.loop import run_training
from tests.train import toy_family


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    cfg = from_dict(
        toy_family.Config,
        {"data": {"name": "embedded-retinamnist", "n_per_class": 2},
         "train": {"steps": 4, "out_dir": str(root / "runs"), "sample_every": 2}},
    )
    run = run_training(toy_family.FAMILY, cfg, progress=False)
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps({"kid": {"mean": 0.12, "ci": [0.1, 0.14]}, "n_fake": 40}))
    (root / "summary.md").write_text("# Summary\n\n| model | KID |\n|---|---|\n| toy | 0.12 [0.10, 0.14] |\n")
    return root


def test_report_contains_images_tables_and_curves(demo_dir):
    out = build_report(demo_dir)
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 3  # curves, generated grid, real grid
    assert "Samples next to real images" in page and "real training images" in page
    assert "0.12 [0.1, 0.14]" in page  # value with its CI
    assert "<table>" in page and "<td>toy</td>" in page  # the markdown summary table
    assert "http://" not in page.replace("http://www.w3.org", "")  # self-contained


def test_report_cli_and_bad_input(demo_dir, tmp_path, capsys):
    assert main(["report", str(demo_dir), "--out", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").exists()
    with pytest.raises(UserError, match="not a directory"):
        build_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="nothing to report"):
        build_report(tmp_path / "empty")


def test_flatten_and_markdown_helpers():
    rows = dict(flatten_metrics({"a": {"value": 1.0, "ci_low": 0.5, "ci_high": 1.5}, "b": 2, "c": {"se": 1}}))
    assert rows == {"a": "1 [0.5, 1.5]", "b": "2", "c.se": "1"}
    assert "<th>x</th>" in markdown_tables_to_html("| x | y |\n|--|--|\n| 1 | 2 |")


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="headless Chromium is not installed (make test installs it)")
def test_report_renders_in_headless_chromium(demo_dir, tmp_path):
    report = build_report(demo_dir)
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert loaded is not None, dom[:500]
    assert int(loaded.group(1)) >= 3  # the images decoded in the browser
    assert dom.count("<table") >= 2
    shot = demo_dir / "report-screenshot.png"
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()],
        capture_output=True, timeout=120,
    )
    assert shot.exists() and shot.stat().st_size > 10_000
