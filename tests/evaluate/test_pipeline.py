import json

import numpy as np
import pytest

from qmedgen.cli import main
from qmedgen.errors import DataError, UserError
from qmedgen.evaluate.evaluation import EvalConfig, evaluate_images
from qmedgen.evaluate.extractors import load_extractor
from qmedgen.evaluate.pipeline import SampleEvalOptions, evaluate_samples
from qmedgen.evaluate.samples import load_samples
from qmedgen.images import write_samples

from .conftest import noisy_copy

FAST = EvalConfig(n_boot=20, fid_boot=5, kid_subsets=10, msssim_pairs=20, progress=False)


def test_evaluate_images_all_metrics_and_copies(blood, tiny_extractor_file):
    train, test = blood
    ext = load_extractor(tiny_extractor_file, "cpu")
    fake = noisy_copy(train.images[:64], 1.0)  # near-copies of training images
    res = evaluate_images(test.images, test.labels, fake, train.labels[:64], ext, FAST, train_images=train.images)
    m = res["metrics"]
    assert set(m) >= {"fid", "kid", "precision", "recall", "density", "coverage", "feature_diversity",
                      "msssim_diversity", "copy_fraction", "nn_distance_ratio"}
    assert m["copy_fraction"]["value"] > 0.9 and m["copy_fraction"]["heldout_copy_fraction"] < 0.2
    assert m["nn_distance_ratio"]["value"] < 0.2
    for name, v in m.items():
        if np.isfinite(v["ci_low"]):
            assert v["ci_low"] - 1e-9 <= v["ci_high"], name
    assert res["flags"] == [] or all("fid" not in f for f in res["flags"])  # 16-d features, 64+ samples: fine


def test_evaluate_is_deterministic_and_flags_small_samples(blood, tiny_extractor_file):
    _, test = blood
    ext = load_extractor(tiny_extractor_file, "cpu")
    fake, y = noisy_copy(test.images[:12], 20.0), test.labels[:12]
    with pytest.warns(UserWarning, match="fewer samples"):
        a = evaluate_images(test.images, test.labels, fake, y, ext, FAST)
    with pytest.warns(UserWarning):
        b = evaluate_images(test.images, test.labels, fake, y, ext, FAST)
    assert a["metrics"] == b["metrics"]
    assert not a["metrics"]["fid"]["reliable"] and any("KID" in f for f in a["flags"])


def test_size_and_channel_mismatch_errors_name_both(blood, tiny_extractor_file):
    _, test = blood
    ext = load_extractor(tiny_extractor_file, "cpu")
    with pytest.raises(DataError, match=r"channel counts differ.*28x28 with 1 channel.*28x28 with 3"):
        evaluate_images(test.images, test.labels, test.images[:10, ..., :1], test.labels[:10], ext, FAST)
    with pytest.raises(DataError, match=r"image sizes differ.*14x14"):
        evaluate_images(test.images, test.labels, test.images[:10, :14, :14], test.labels[:10], ext, FAST)


def test_samples_folder_roundtrip_and_bad_folders(tmp_path, blood):
    _, test = blood
    out = write_samples(test.images[:16], test.labels[:16], tmp_path / "s")
    images, labels, src = load_samples(out)
    assert src.name == "samples.npz" and images.shape == (16, 28, 28, 3)
    (out / "samples.npz").unlink()
    images2, labels2, _ = load_samples(out)  # PNG class folders alone
    assert sorted(labels2.tolist()) == sorted(labels.tolist())
    assert {tuple(x.ravel()[:5]) for x in images2} == {tuple(x.ravel()[:5]) for x in images}
    empty = tmp_path / "empty" / "class_0"
    empty.mkdir(parents=True)
    with pytest.raises(DataError, match="empty class folder"):
        load_samples(tmp_path / "empty")
    with pytest.raises(DataError, match="no generated samples"):
        load_samples(tmp_path / "empty" / "class_0")
    write_samples(test.images[:8], test.labels[:8], tmp_path / "mm")
    next((tmp_path / "mm").glob("class_*/00000.png")).unlink()
    with pytest.raises(DataError, match="mismatched samples"):
        load_samples(tmp_path / "mm")


def test_cli_evaluate_writes_json_and_markdown(tmp_path, blood, tiny_extractor_file, capsys):
    _, test = blood
    out = write_samples(noisy_copy(test.images[:40], 60.0), test.labels[:40], tmp_path / "samples", pngs=False)
    code = main(["evaluate", str(out), "--data", "embedded-bloodmnist", "--extractor", str(tiny_extractor_file),
                 "--no-conditional", "--n-boot", "10", "--fid-boot", "3", "--kid-subsets", "5", "--quiet"])
    assert code == 0
    data = json.loads((out / "metrics_tiny.json").read_text())
    assert data["dataset"] == "embedded-bloodmnist" and data["n_fake"] == 40 and "kid" in data["metrics"]
    assert data["real_baseline"]["split"] == "train" and data["real_baseline"]["n"] == 40
    # real images score better than noisy copies on KID: the reference row is meaningful
    assert data["real_baseline"]["metrics"]["kid"] < data["metrics"]["kid"]["value"]
    md = (out / "metrics_tiny.md").read_text()
    assert "| kid |" in md and "real vs real" in md
    assert main(["evaluate", str(out), "--data", "embedded-bloodmnist", "--extractor", str(tmp_path / "nope.pt"),
                 "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_evaluate_samples_rejects_wrong_size(tmp_path, blood, tiny_extractor_file):
    _, test = blood
    small = write_samples(test.images[:8, :14, :14], test.labels[:8], tmp_path / "s", pngs=False)
    with pytest.raises(UserError, match=r"image sizes differ.*14x14"):
        evaluate_samples(small, SampleEvalOptions(data="embedded-bloodmnist", extractor=str(tiny_extractor_file),
                                                  conditional=False, metrics=FAST))


def test_run_record_gives_dataset_training_images_and_contamination_flag(tmp_path, blood, tiny_extractor_file):
    _, test = blood
    run = tmp_path / "run"
    run.mkdir()
    (run / "indices.json").write_text(json.dumps({"dataset": "embedded-bloodmnist", "split": "test",
                                                  "indices": list(range(40)), "size": 28}))
    out = write_samples(noisy_copy(test.images[:40], 1.0), test.labels[:40], run / "samples-40", pngs=False)
    (out / "sampling.json").write_text(json.dumps({"run_dir": str(run)}))
    options = SampleEvalOptions(extractor=str(tiny_extractor_file), conditional=False, metrics=FAST,
                                real_baseline=False)  # dataset and training images come from the run record
    res, _, _ = evaluate_samples(run, options)
    assert res["dataset"] == "embedded-bloodmnist" and res["train_data"].startswith("run ")
    assert res["metrics"]["copy_fraction"]["value"] > 0.9
    assert any("not held-out" in f for f in res["flags"])
