"""``qmedgen augment`` end to end at a tiny budget (a few generator steps, a few samples, one-epoch classifiers).

Most tests use the tiny ``toy`` family of the training tests (fast); one runs the default MediQ-GAN preset, shrunk.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qmedgen import augment as A
from qmedgen.cli import main
from qmedgen.errors import ConfigError, DataError

TINY = dict(steps=2, size=28, n_per_class_synthetic=2, filter_epochs=1, utility_seeds=(0,), utility_epochs=1,
            utility_augment=("crop",), progress=False)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QMEDGEN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def toy(monkeypatch):
    """Register the training tests' tiny model family as ``toy``."""
    from qmedgen.train import registry
    from tests.train import toy_family

    monkeypatch.setitem(sys.modules, "qmedgen_toy_family", toy_family)
    monkeypatch.setitem(registry.FAMILIES, "toy", "qmedgen_toy_family")
    monkeypatch.setattr(toy_family.ToyTrainer, "nan_at", None)
    monkeypatch.setattr(toy_family.ToyTrainer, "kill_at", None)
    return toy_family


def cfg(out, data="embedded-bloodmnist", log=None, **kw):
    return A.AugmentConfig(data=data, out=out, **{"n_per_class": 4, "model": "toy", **TINY, **kw},
                           log=log or (lambda msg: None))


def make_folder(root, classes, size=(28, 28), mode="RGB", seed=0):
    """``root/<class>/<i>.png``: ``classes`` maps class name -> number of images. Each image is a grey level
    (dark for the first class, bright for the next, ...) plus noise: unlike pure noise, a blank generator output
    is then no closer to the real images than they are to each other (pure noise would make it a "near copy")."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            level = rng.uniform(10, 70) if k % 2 == 0 else rng.uniform(185, 245)
            x = np.clip(level + rng.uniform(-40, 40, shape), 0, 255).astype(np.uint8)
            Image.fromarray(x, mode).save(root / name / f"{i}.png")
    return root


def test_end_to_end_with_the_default_preset(tmp_path):
    """Layout, manifest, utility report, and the holdout never reaching the generator (its recorded indices)."""
    out = tmp_path / "out"
    c = cfg(out, model=A.DEFAULT_MODEL, overrides=("model.n_qubits=4", "model.depth=2", "model.prototypes.init=random",
                                                   "train.batch_size=8"))
    result = A.run_augment(c)
    names = ["basophil", "eosinophil", "erythroblast", "immature_granulocytes_myelocytes_metamyelocytes_",
             "lymphocyte", "monocyte", "neutrophil", "platelet"]
    assert sorted(p.name for p in (out / "synthetic").iterdir()) == names
    for name in names:
        assert sorted(p.name for p in (out / "synthetic" / name).iterdir()) == ["00000.png", "00001.png"]
        assert Image.open(out / "synthetic" / name / "00000.png").size == (28, 28)
    m = json.loads((out / "manifest.json").read_text())
    gen = m["generator"]
    assert gen["family"] == "mediqgan" and gen["preset"] == A.DEFAULT_MODEL and gen["seed"] == 0
    run_config = json.loads(Path(gen["config"]).read_text())
    assert gen["steps"] == 2 and run_config["family"] == "mediqgan" and run_config["train"]["steps"] == 2
    assert len(m["images"]) == 8 * 4  # 2 written per class, oversampled 2x
    for row in m["images"]:
        assert set(row) >= {"file", "label", "confidence", "nn_distance", "kept", "reasons"}
        assert row["written"] == (row["file"] is not None) and (not row["written"] or row["kept"])
        if row["file"]:
            assert (out / row["file"]).is_file()
    assert [c_["n_written"] for c_ in m["classes"]] == [2] * 8
    assert [c_["n_holdout"] for c_ in m["classes"]] == [1] * 8  # round(0.2 * 4) = 1 per class
    assert m["filter"]["n"] == 32 and "per_reason" in m["filter"]
    # the written images are the selected samples, pixel for pixel
    with np.load(out / "work" / "samples" / "samples.npz") as z:
        first = next(r for r in m["images"] if r["written"])
        assert np.array_equal(np.asarray(Image.open(out / first["file"])), z["images"][first["index"]])

    # holdout: the run trained on exactly the generator images, none of them held out
    split = json.loads((out / "work" / "split.json").read_text())
    assert Path(gen["run_dir"]).parent == result["out"] / "runs"
    run = json.loads((Path(gen["run_dir"]) / "indices.json").read_text())
    from qmedgen.data.folder import load_folder

    folder = load_folder(out / "work" / "train-images", size=28)
    files = folder.info.extra["files"]
    by_file = {r["file"]: r for r in split["train"]}
    trained = {by_file[files[i]]["source"] for i in run["indices"]}
    held = {r["source"] for r in split["holdout"]}
    assert len(trained) == 24 and len(held) == 8 and not trained & held
    assert run_config["data"]["name"] == f"folder:{out / 'work' / 'train-images'}"
    data = A.load_input("embedded-bloodmnist", 28, n_per_class=4, seed=0)
    for i in run["indices"]:  # the folder holds the input images unchanged (PNG is lossless)
        assert np.array_equal(folder.images[i], data.images[by_file[files[i]]["input_index"]])

    ut = json.loads((out / "utility.json").read_text())
    assert set(ut["summary"]) == {"real", "real+syn@0.67", "syn>real"} and ut["settings"]["n_test"] == 8
    assert ut["settings"]["n_real_train"] == 24 and ut["n_synthetic"] == 16
    assert "| real |" in (out / "utility.md").read_text()
    state = json.loads((out / "augment-state.json").read_text())
    assert list(state["stages"]) == list(A.STAGES)


def test_folder_input_resume_skips_finished_stages(tmp_path, toy, monkeypatch):
    src = make_folder(tmp_path / "in", {"cats": 4, "dogs": 5})
    out = tmp_path / "out"
    logs = []
    A.run_augment(cfg(out, data=f"folder:{src}", n_per_class=None, log=logs.append))
    from qmedgen.data.folder import load_folder

    syn = load_folder(out / "synthetic", size=28)  # a class-folder dataset with the input's class ids
    assert syn.info.class_names == ["cats", "dogs"] and np.bincount(syn.labels).tolist() == [2, 2]
    split = json.loads((out / "work" / "split.json").read_text())
    assert {r["source"].split("/")[0] for r in split["holdout"]} == {"cats", "dogs"}
    assert len(split["train"]) == 7 and len(split["holdout"]) == 2

    def boom(*a, **k):
        raise AssertionError("a finished stage was run again")

    from qmedgen.evaluate import selection, utility
    from qmedgen.train import api

    with monkeypatch.context() as m:
        for mod, name in ((api, "train"), (api, "train_or_resume"), (api, "sample"),
                          (selection, "select_synthetic"), (utility, "run_utility")):
            m.setattr(mod, name, boom)
        logs.clear()
        A.run_augment(cfg(out, data=f"folder:{src}", n_per_class=None, log=logs.append))
    assert sum("skipped" in line for line in logs) == len(A.STAGES)

    # a lost output is redone, with every later stage; earlier ones stay skipped
    (out / "manifest.json").unlink()
    with monkeypatch.context() as m:
        m.setattr(api, "train_or_resume", boom)
        m.setattr(api, "sample", boom)
        logs.clear()
        A.run_augment(cfg(out, data=f"folder:{src}", n_per_class=None, log=logs.append))
    skipped = [line.split(":")[0].removeprefix("[augment] ") for line in logs if "skipped" in line]
    assert skipped == ["prepare", "train", "sample", "filter"] and (out / "manifest.json").is_file()


def test_killed_training_resumes_from_its_checkpoint(tmp_path, toy, monkeypatch):
    out = tmp_path / "out"
    c = cfg(out, steps=6, overrides=("train.checkpoint_every=2",), utility=False)
    monkeypatch.setattr(toy.ToyTrainer, "kill_at", 3)
    with pytest.raises(KeyboardInterrupt):
        A.run_augment(c)
    state = json.loads((out / "augment-state.json").read_text())
    assert list(state["stages"]) == ["prepare"]
    monkeypatch.setattr(toy.ToyTrainer, "kill_at", None)
    A.run_augment(c)
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 1  # continued, not restarted
    status = json.loads((runs[0] / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 6
    assert (runs[0] / "environment-resume.json").is_file()
    assert not (out / "utility.json").exists() and (out / "manifest.json").is_file()


def test_another_config_in_the_same_out_is_an_error_unless_forced(tmp_path, toy):
    out = tmp_path / "out"
    A.run_augment(cfg(out, utility=False))
    with pytest.raises(ConfigError, match=r"another configuration \(n_per_class_synthetic: 2 -> 3.*--force"):
        A.run_augment(cfg(out, utility=False, n_per_class_synthetic=3))
    A.run_augment(cfg(out, utility=False, n_per_class_synthetic=3, force=True))
    assert len(list((out / "runs").iterdir())) == 2  # started over: a new run
    assert all(len(list(d.iterdir())) == 3 for d in (out / "synthetic").iterdir())


def test_dry_run_writes_nothing(tmp_path, toy, capsys):
    out = tmp_path / "out"
    plan = A.plan_augment(cfg(out))
    assert [c["holdout"] for c in plan["classes"]] == [1] * 8 and [c["generator"] for c in plan["classes"]] == [3] * 8
    assert plan["steps"] == 2 and plan["family"] == "toy" and plan["estimate"]["method"].startswith("measured")
    assert plan["estimate"]["total_seconds"] > 0
    code = main(["augment", "embedded-bloodmnist", "--n-per-class", "4", "--model", "toy", "--steps", "2", "--size",
                 "28", "--out", str(out), "--dry-run", "--no-progress", "--utility-seeds", "0"])
    text = capsys.readouterr().out
    assert code == 0 and "estimated time" in text and "nothing was written" in text and "platelet" in text
    assert not out.exists()


def test_holdout_split_and_class_folder_names():
    labels = np.repeat([0, 1, 2], [3, 10, 6])
    tr, ho = A.holdout_split(labels, ["a", "b", "c"], 0.2, seed=0)
    assert np.bincount(labels[ho]).tolist() == [1, 2, 1] and len(tr) + len(ho) == len(labels)
    assert not set(tr) & set(ho)
    assert np.array_equal(ho, A.holdout_split(labels, ["a", "b", "c"], 0.2, seed=0)[1])
    assert A.class_folder_names(["a", "b c"]) == ["a", "b_c"]
    assert A.class_folder_names(["z", "a"]) == ["0_z", "1_a"]           # keeps the class-id order when sorted
    assert A.class_folder_names(["a b", "a/b"]) == ["0_a_b", "1_a_b"]    # no collisions


@pytest.mark.parametrize("case", ["few", "unreadable", "sizes", "channels", "out-inside", "out-same", "model",
                                  "reserved"])
def test_bad_inputs_are_clear_errors_and_write_nothing(tmp_path, toy, case):
    src = make_folder(tmp_path / "in", {"aa": 4, "bb": 4})
    out = tmp_path / "out"
    kw = {}
    if case == "few":
        make_folder(src, {"cc": 2})
        err, match = DataError, r"class 'cc' has 2 image\(s\): 1 held out leaves 1"
    elif case == "unreadable":
        (src / "bb" / "broken.png").write_bytes(b"not a png")
        err, match = DataError, r"bb/broken\.png: cannot read image"
    elif case == "sizes":
        make_folder(src, {"bb": 1}, size=(32, 32))
        (src / "bb" / "0.png").rename(src / "bb" / "big.png")
        err, match = DataError, r"different sizes: 28x28 \(e\.g\. aa/0\.png\); 32x32 \(e\.g\. bb/big\.png\)"
    elif case == "channels":
        make_folder(src, {"bb": 1}, mode="L")
        err, match = DataError, r"different channel counts: 1 channel\(s\) \(e\.g\. bb/0\.png\); 3 channel\(s\)"
    elif case == "out-inside":
        out = src / "aa" / "out"
        err, match = ConfigError, "inside the input folder"
    elif case == "out-same":
        out = src
        err, match = ConfigError, "is the input folder"
    elif case == "model":
        kw["model"] = "no-such-model"
        err, match = ConfigError, "unknown model, preset or config file 'no-such-model'"
    else:
        kw["overrides"] = ("data.name=bloodmnist",)
        err, match = ConfigError, "data.name=... is not allowed"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(err, match=match):
        A.run_augment(cfg(out, data=f"folder:{src}", n_per_class=None, **kw))
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "cache" not in p.parts) == [
        p for p in before if "cache" not in p.parts]


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    code = main(["augment", "embedded-bloodmnist", "--out", str(tmp_path / "o"), "--holdout", "1.5"])
    assert code == 2 and "--holdout must be a fraction" in capsys.readouterr().err
