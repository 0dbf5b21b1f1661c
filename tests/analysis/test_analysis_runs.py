import json

import pytest
import torch

from qmedgen.analysis import runs
from qmedgen.analysis.runs import analyze_run, circuit_spectra, compare_runs, generator_spectra
from qmedgen.cli import main


def test_generator_spectra_streams_and_rank_bound(tiny_trainer, n_subgenerators):
    K = n_subgenerators
    gen = tiny_trainer.generator
    labels = torch.tensor([0, 1, 0])
    with runs.autograd_circuits(tiny_trainer):
        spectra = generator_spectra(gen, labels)
    assert set(spectra) >= {"generator", "classical stream", "quantum stream", "fused", "circuit map (all K)"}
    q = spectra["quantum stream"].summary()
    assert q["numerical_rank_mean"] <= K  # the K averaged readouts bound the quantum stream's rank
    assert spectra["generator"].summary()["max_rank"] == 6
    assert spectra["circuit map (all K)"].in_dim == K * 3
    # the executor is restored afterwards
    assert gen.quantum_layer.executor is None


def test_circuit_spectra_per_subgenerator(tiny_trainer, n_subgenerators):
    sp = circuit_spectra(tiny_trainer, n_samples=3)
    assert len(sp) == n_subgenerators
    for s in sp.values():
        assert s.singular_values.shape == (3, 3)


def _fake_run(tmp_path, name, steps=(1, 2)):
    run = tmp_path / name
    run.mkdir()
    for s in steps:
        (run / "checkpoints" / f"step-{s:08d}").mkdir(parents=True)
        (run / "checkpoints" / f"step-{s:08d}" / "meta.json").write_text("{}")
    (run / "config.json").write_text(json.dumps({"family": "tinygan"}))
    return run


def test_analyze_run_tracks_checkpoints_and_compares(tmp_path, make_trainer):
    TinyTrainer = make_trainer  # noqa: N806
    run_a, run_b = _fake_run(tmp_path, "00001-q"), _fake_run(tmp_path, "00002-c", steps=(1,))

    def loader(run_dir, checkpoint, device):
        return TinyTrainer(seed=0 if checkpoint in ("latest", 2) else 1)

    res = analyze_run(run_a, tmp_path / "out_a", extractor="pixels", geometry_samples=8, n_samples=3, loader=loader)
    assert [t["step"] for t in res["checkpoints"]] == [1, 2]
    assert res["feature_space"] == "pixels"
    assert res["geometry"]["ppl"]["ppl"] > 0
    assert "quantum" in res["geometry"]["utilisation"]
    for name in ("analysis.json", "jacobian_spectra.png", "jacobian_erank_checkpoints.png", "embedding_pca.png",
                 "utilisation.png"):
        assert (tmp_path / "out_a" / name).is_file()
    res_b = analyze_run(run_b, tmp_path / "out_b", extractor="pixels", geometry_samples=8, n_samples=3,
                        all_checkpoints=False, loader=loader)
    table = compare_runs([res, res_b], tmp_path / "cmp")
    assert {r["run"] for r in table["rows"]} == {"00001-q", "00002-c"}
    assert (tmp_path / "cmp" / "comparison.md").read_text().count("| 00001-q |") >= 4
    assert (tmp_path / "cmp" / "comparison_erank.png").is_file()


def test_cli_analyze_runs(tmp_path, monkeypatch, make_trainer):
    TinyTrainer = make_trainer  # noqa: N806
    run = _fake_run(tmp_path, "00003-q", steps=())
    monkeypatch.setattr(runs, "_load_run", lambda r, c, d: TinyTrainer())
    assert main(["analyze", str(run), "--extractor", "pixels", "--no-checkpoints", "--n-samples", "2",
                 "--geometry-samples", "4"]) == 0
    assert (run / "analysis" / "analysis.json").is_file()
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit):
        main(["analyze"])
