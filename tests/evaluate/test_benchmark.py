import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from qmedgen.cli import main
from qmedgen.errors import ConfigError
from qmedgen.evaluate import benchmark as B
from qmedgen.images import write_samples

from .conftest import noisy_copy


class FakeModels:
    """Stands in for qmedgen.train.api: 'training' records the few-shot draw, 'sampling' perturbs it."""

    def __init__(self, fail_on: str | None = None):
        self.trained, self.sampled, self.fail_on = [], [], fail_on

    def train(self, model, overrides, run_root, progress=True):
        from qmedgen.data import few_shot_subset, load_dataset

        if self.fail_on and overrides.get("model.tag") == self.fail_on:
            raise KeyboardInterrupt  # an interrupted cell
        ds = load_dataset(overrides["data.name"], split="train")
        idx = few_shot_subset(ds.labels, n_per_class=overrides["data.n_per_class"], seed=overrides["data.subset_seed"])
        run = run_root / f"run{len(self.trained)}"
        run.mkdir(parents=True)
        (run / "indices.json").write_text(json.dumps({"dataset": overrides["data.name"], "split": "train",
                                                      "indices": idx.tolist(), "size": 28}))
        (run / "overrides.json").write_text(json.dumps(overrides))
        self.trained.append((model, overrides))
        return run

    def sample(self, run_dir, n_per_class, out, **opts):
        from qmedgen.data import load_dataset

        info = json.loads((run_dir / "indices.json").read_text())
        ov = json.loads((run_dir / "overrides.json").read_text())
        ds = load_dataset(info["dataset"], split="train")
        idx = np.asarray(info["indices"])
        rng = np.random.default_rng(ov["train.seed"])
        pick = np.concatenate([rng.choice(idx[ds.labels[idx] == c], n_per_class) for c in np.unique(ds.labels)])
        scale = float(ov.get("model.noise", 10.0))
        write_samples(noisy_copy(ds.images[pick], scale, seed=ov["train.seed"]), ds.labels[pick], out, pngs=False)
        (out / "sampling.json").write_text(json.dumps({"run_dir": str(run_dir)}))
        self.sampled.append(run_dir)
        return out


def _protocol(tmp_path, extractor):
    proto = {
        "name": "toy", "description": "fake models", "data": "embedded-bloodmnist", "size": 28, "seeds": [0, 1],
        "subset_sizes": [3], "reference": "noisy",
        "models": {"clean": {"model": "fake", "overrides": {"model.noise": 2.0, "model.tag": "clean"}},
                   "noisy": {"model": "fake", "overrides": {"model.noise": 60.0, "model.tag": "noisy"}}},
        "train": {"train.steps": 1},
        "sample": {"n_per_class": 4},
        "evaluate": {"extractor": str(extractor), "conditional": False, "n_boot": 10, "fid_boot": 2,
                     "kid_subsets": 5, "msssim_pairs": 10},
        "utility": {"enabled": True, "arms": ["real", "real+syn", "syn"], "ratios": [1.0], "seeds": [0],
                    "epochs": 0.5, "batch_size": 8, "device": "cpu", "augment": ["crop"]},
        "quick": {"seeds": [0], "sample": {"n_per_class": 3}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(proto))
    return path


def test_benchmark_runs_aggregates_and_resumes(tmp_path, tiny_extractor_file):
    proto = _protocol(tmp_path, tiny_extractor_file)
    fake = FakeModels(fail_on="noisy")
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        B.run_benchmark(proto, out, trainer=fake.train, sampler=fake.sample, progress=False, log=lambda m: None)
    state = json.loads((out / "state.json").read_text())
    assert (state["cells"]["clean_n3_s0"]["done"] and "noisy_n3_s0" not in state["cells"]) or \
        not state["cells"]["noisy_n3_s0"].get("done")
    fake2 = FakeModels()
    res = B.run_benchmark(proto, out, trainer=fake2.train, sampler=fake2.sample, progress=False, log=lambda m: None)
    # the finished cell was not recomputed; the other three were
    assert [o["model.tag"] for _, o in fake2.trained] == ["noisy", "clean", "noisy"]
    assert res["n_cells_done"] == 4
    rows = {r["model"]: r for r in res["rows"]}
    assert rows["clean"]["seeds"] == [0, 1] and rows["clean"]["metrics"]["kid"]["n"] == 2
    assert B.REAL_ROW in rows and rows[B.REAL_ROW]["metrics"]["kid"]["n"] == 2  # real images of the train split
    assert rows["clean"]["metrics"]["kid"]["mean"] < rows["noisy"]["metrics"]["kid"]["mean"]
    assert "utility.syn.accuracy" in rows["clean"]["metrics"]
    # the paired gain, against a hand computation from the recorded per-cell arms
    state = json.loads((out / "state.json").read_text())
    per_seed = [state["cells"][f"clean_n3_s{s}"]["stages"]["utility"] for s in (0, 1)]
    diffs = [u["real+syn@1"]["balanced_accuracy"] - u["real"]["balanced_accuracy"] for u in per_seed]
    gain = rows["clean"]["metrics"]["utility.gain@1.balanced_accuracy"]
    half = 12.7062047 * np.std(diffs, ddof=1) / np.sqrt(2)  # t(0.975, 1 dof)
    assert gain["n"] == 2 and gain["mean"] == pytest.approx(np.mean(diffs))
    assert gain["ci_low"] == pytest.approx(np.mean(diffs) - half) and gain["ci_high"] == pytest.approx(
        np.mean(diffs) + half)
    strict = [u["real+syn@1"]["balanced_accuracy"] - max(u["real"]["balanced_accuracy"],
              u.get("real-noaug", u["real"])["balanced_accuracy"]) for u in per_seed]
    assert rows["clean"]["metrics"]["utility.gain_vs_best_real@1.balanced_accuracy"]["mean"] == pytest.approx(
        np.mean(strict))
    assert (out / "utility-cache.json").is_file()  # the real-only arms of (n, seed) are shared by both models
    comp = res["comparisons"][0]
    assert len(res["comparisons"]) == 1
    assert comp["model"] == "clean" and comp["reference"] == "noisy" and comp["metrics"]["kid"]["diff_mean"] < 0
    md = (out / "results.md").read_text()
    assert "| clean | 3 |" in md and "Paired differences" in md and f"| {B.REAL_ROW} | 3 |" in md
    assert "## Augmentation gain" in md and "utility.gain@1.balanced_accuracy" in md
    assert (out / "plots" / "summary.png").is_file()
    assert (out / "grids" / "clean_n3_s0.png").is_file() and (out / "grids" / "real_n3_s1.png").is_file()
    # a third run recomputes nothing
    fake3 = FakeModels()
    B.run_benchmark(proto, out, trainer=fake3.train, sampler=fake3.sample, progress=False, log=lambda m: None)
    assert fake3.trained == [] and fake3.sampled == []


def test_changed_settings_recompute_cells_and_quick_variant(tmp_path, tiny_extractor_file):
    proto_path = _protocol(tmp_path, tiny_extractor_file)
    quick = B.load_protocol(proto_path, quick=True)
    assert quick["name"] == "toy-quick" and quick["seeds"] == [0] and quick["sample"]["n_per_class"] == 3
    assert quick["evaluate"]["n_boot"] == 10  # merged, not replaced
    quick["utility"] = {"enabled": False}
    fake = FakeModels()
    B.run_benchmark(quick, tmp_path / "q", trainer=fake.train, sampler=fake.sample, progress=False,
                    log=lambda m: None)
    assert len(fake.trained) == 2
    quick["sample"] = {"n_per_class": 2}
    B.run_benchmark(quick, tmp_path / "q", trainer=fake.train, sampler=fake.sample, progress=False,
                    log=lambda m: None)
    assert len(fake.trained) == 4  # the cells' settings changed: recomputed


def test_protocol_validation_and_shipped_protocols(tmp_path):
    assert {"mediqgan-retinamnist", "qdiffusion-mnist", "qdiffusion-bloodmnist",
            "bloodmnist-augmentation"} <= set(B.list_protocols())
    for name in B.list_protocols():
        for quick in (False, True):
            p = B.load_protocol(name, quick=quick)
            cells = B.cells(p)
            assert cells and len({c["id"] for c in cells}) == len(cells)
            assert all(c["overrides"]["data.name"] == p["data"] or "data.name" in p.get("train", {}) for c in cells)
        assert len(B.cells(B.load_protocol(name, quick=True))) <= 3
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: mnist\nmodels: {a: {model: qdiffusion}}\nreference: b\n")
    with pytest.raises(ConfigError, match="reference 'b'"):
        B.load_protocol(bad)
    bad.write_text("name: x\ndata: mnist\nmodel: {}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        B.load_protocol(bad)
    with pytest.raises(ConfigError, match="unknown benchmark protocol"):
        B.load_protocol("no-such-protocol")


def test_cli_benchmark_list(capsys):
    assert main(["benchmark", "--list"]) == 0
    assert "qdiffusion-mnist" in capsys.readouterr().out
    assert main(["benchmark", "/nonexistent.yaml"]) == 2


def test_shipped_protocol_keys_resolve_against_model_configs():
    api = pytest.importorskip("qmedgen.train.api")
    for name in B.list_protocols():
        for quick in (False, True):
            for c in B.cells(B.load_protocol(name, quick=quick)):
                api.resolve_config(c["family"], c["overrides"])  # raises ConfigError on a wrong key or value


def test_cell_killed_mid_training_resumes_its_run(monkeypatch, tmp_path):
    """Re-running a protocol after a kill continues the cell's unfinished run from its checkpoint (same final
    weights as an uninterrupted run) instead of training from scratch; a finished run is reused as it is."""
    import json
    import sys

    import torch
    from safetensors.torch import load_file

    from qmedgen.evaluate.benchmark import _default_train
    from qmedgen.train import registry
    from qmedgen.train.checkpoint import list_checkpoints
    from tests.train import toy_family

    monkeypatch.setitem(sys.modules, "qmedgen_toy_family", toy_family)
    monkeypatch.setitem(registry.FAMILIES, "toy", "qmedgen_toy_family")
    monkeypatch.setattr(toy_family.ToyTrainer, "nan_at", None)
    overrides = {"data.name": "embedded-bloodmnist", "data.n_per_class": 2, "train.steps": 6,
                 "train.checkpoint_every": 2}

    def weights(run):
        return load_file(str(list_checkpoints(run / "checkpoints")[-1] / "weights.safetensors"))

    monkeypatch.setattr(toy_family.ToyTrainer, "kill_at", None)
    straight = _default_train("toy", overrides, tmp_path / "a", progress=False)
    monkeypatch.setattr(toy_family.ToyTrainer, "kill_at", 3)
    with pytest.raises(KeyboardInterrupt):
        _default_train("toy", overrides, tmp_path / "b", progress=False)
    monkeypatch.setattr(toy_family.ToyTrainer, "kill_at", None)
    resumed = _default_train("toy", overrides, tmp_path / "b", progress=False)
    assert resumed.name.startswith("00000-") and len(list((tmp_path / "b").iterdir())) == 1
    assert json.loads((resumed / "status.json").read_text())["state"] == "finished"
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _default_train("toy", overrides, tmp_path / "b", progress=False) == resumed  # finished: reused
    changed = {**overrides, "model.hidden": 8}  # another config: never resumed into the old run
    other = _default_train("toy", changed, tmp_path / "b", progress=False)
    assert other != resumed and other.name.startswith("00001-")


def test_processes_with_disjoint_models_share_one_output(tmp_path, tiny_extractor_file):
    proto = B.load_protocol(_protocol(tmp_path, tiny_extractor_file))
    proto["utility"] = {"enabled": False}
    out = tmp_path / "out"
    # a second process that loaded the state before the first one finished must not drop the first one's cells
    stale = B.State(out / "state.json", proto)
    fake = FakeModels()
    B.run_benchmark(proto, out, trainer=fake.train, sampler=fake.sample, progress=False, log=lambda m: None,
                    models=["clean"])
    assert {o["model.tag"] for _, o in fake.trained} == {"clean"}
    stale.cell(B.cells(proto)[1])  # a 'noisy' cell
    stale.save()
    assert set(json.loads((out / "state.json").read_text())["cells"]) >= {"clean_n3_s0", "clean_n3_s1"}
    fake2 = FakeModels()
    res = B.run_benchmark(proto, out, trainer=fake2.train, sampler=fake2.sample, progress=False, log=lambda m: None,
                          models=["noisy"])
    assert {o["model.tag"] for _, o in fake2.trained} == {"noisy"} and res["n_cells_done"] == 4
    with pytest.raises(ConfigError, match="not in the protocol's models"):
        B.run_benchmark(proto, out, models=["bogus"], log=lambda m: None)


def test_results_only_reports_the_finished_cells_and_runs_none(tmp_path, tiny_extractor_file):
    proto = B.load_protocol(_protocol(tmp_path, tiny_extractor_file))
    proto["utility"] = {"enabled": False}
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="no finished cell"):
        B.run_benchmark(proto, out, progress=False, log=lambda m: None, run_cells=False)
    fake = FakeModels()
    B.run_benchmark(proto, out, trainer=fake.train, sampler=fake.sample, progress=False, log=lambda m: None,
                    models=["clean"])
    (out / "results.json").unlink()
    before = json.loads((out / "state.json").read_text())
    idle = FakeModels()
    res = B.run_benchmark(proto, out, trainer=idle.train, sampler=idle.sample, progress=False, log=lambda m: None,
                          run_cells=False)
    assert idle.trained == [] and res["n_cells_done"] == 2
    assert json.loads((out / "state.json").read_text()) == before  # no empty entries for the unfinished cells
    assert (out / "results.json").is_file() and (out / "results.md").is_file()


@pytest.mark.parametrize(("extra", "match"), [
    ("subset_size: [10]\n", r"unknown key 'subset_size'\. Did you mean 'subset_sizes'\?"),
    ("evaluate: {n_boots: 10}\n", r"unknown key 'evaluate\.n_boots'\. Did you mean 'n_boot'\?"),
    ("utility: {enable: true}\n", r"unknown key 'utility\.enable'\. Did you mean 'enabled'\?"),
    ("keys: {sed: train.seed}\n", r"unknown key 'keys\.sed'\. Did you mean 'seed'\?"),
    ("quick: {seed: [0]}\n", r"'quick' section\): unknown key 'seed'\. Did you mean 'seeds'\?"),
    ("size: big\n", r"size: expected an integer, got 'big'"),
    ("evaluate: {conditional: maybe}\n", r"evaluate\.conditional: expected true/false"),
])
def test_protocol_typos_and_wrong_types_name_the_key(tmp_path, extra, match):
    """Protocols go through qmedgen.config like training configs: a misspelled key is named, with a suggestion."""
    bad = tmp_path / "typo.yaml"
    bad.write_text("name: x\ndata: mnist\nmodels: {a: {model: qdiffusion}}\n" + extra)
    with pytest.raises(ConfigError, match=match) as info:
        B.load_protocol(bad)
    assert str(bad) in str(info.value)


def test_protocol_model_entries_are_typed(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: mnist\nmodels: {a: {modle: qdiffusion}}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'models\.a\.modle'\. Did you mean 'model'\?"):
        B.load_protocol(bad)
    bad.write_text("name: x\ndata: mnist\nmodels: {a: {overrides: {}}}\n")
    with pytest.raises(ConfigError, match=r"missing required key 'models\.a\.model'"):
        B.load_protocol(bad)


def test_typed_schema_keeps_the_resolved_protocol(tmp_path, tiny_extractor_file):
    """The schema fills the same defaults as before; the mapping (protocol.yaml, cell hashes) is as written."""
    from qmedgen.evaluate.protocol import parse_protocol

    proto = B.load_protocol(_protocol(tmp_path, tiny_extractor_file))
    assert list(proto) == ["data", "description", "evaluate", "models", "name", "reference", "sample", "seeds",
                           "size", "subset_sizes", "train", "utility", "split", "keys"]
    assert proto["split"] == "test" and proto["keys"]["seed"] == "train.seed"
    assert proto["evaluate"]["n_boot"] == 10 and "fid_boot" in proto["evaluate"] and "k" not in proto["evaluate"]
    typed = parse_protocol(proto)
    assert typed.models["clean"].model == "fake" and typed.evaluate.n_boot == 10 and typed.evaluate.k == 5
    assert typed.utility.enabled and typed.utility.arms == ("real", "real+syn", "syn")
    recorded = Path(__file__).parents[2] / "benchmarks" / "results" / "bloodmnist-augmentation"
    if (recorded / "protocol.yaml").is_file():  # a finished run resumes: same protocol.yaml, same cell hashes
        shipped = B.load_protocol("bloodmnist-augmentation")
        assert yaml.safe_dump(shipped, sort_keys=False) == (recorded / "protocol.yaml").read_text()
        state = json.loads((recorded / "state.json").read_text())
        assert all(state["cells"][c["id"]]["hash"] == c["hash"] for c in B.cells(shipped) if c["id"] in state["cells"])
