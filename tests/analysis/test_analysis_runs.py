import json

import pytest
import torch

from qmedgen.analysis import runs
from qmedgen.analysis.runs import analyze_run, circuit_spectra, compare_runs, generator_spectra
from qmedgen.cli import main
from tests.analysis.conftest import TINY_SPEC


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
    TinyTrainer = make_trainer
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
    TinyTrainer = make_trainer
    run = _fake_run(tmp_path, "00003-q", steps=())
    monkeypatch.setattr(runs, "_load_run", lambda r, c, d: TinyTrainer())
    assert main(["analyze", str(run), "--extractor", "pixels", "--no-checkpoints", "--n-samples", "2",
                 "--geometry-samples", "4"]) == 0
    assert (run / "analysis" / "analysis.json").is_file()
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit):
        main(["analyze"])


def _diffusion_trainer(kind: str):
    from qmedgen.models.bottleneck import GateSpec, make_gate

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.gate = make_gate(GateSpec(kind=kind, n_qubits=3, depth=1), 8)
            self.out = torch.nn.Conv2d(8, 1, 3, padding=1)

        def forward(self, x):
            return self.out(self.gate(torch.tanh(self.conv(x))))

    class Trainer:
        family = "tinydiff"

        def __init__(self):
            self.spec, self.device, self.ema = TINY_SPEC, torch.device("cpu"), Net().eval()

        def modules(self):
            return {"ema": self.ema}

        def sample(self, labels, generator=None, **opts):
            x = torch.randn(len(labels), 1, 8, 8, generator=generator)
            for _ in range(opts.get("steps", 3)):
                x = x - 0.1 * self.ema(x)
            return x.clamp(-1, 1)

    return Trainer()


@pytest.mark.parametrize("kind", ["quantum", "matched-se"])
def test_diffusion_gate_spectra_at_captured_bottleneck_inputs(kind):
    trainer = _diffusion_trainer(kind)
    spectra = runs._spectra_for(trainer, n_samples=4, seed=0, sample_opts={"steps": 2})
    logits = spectra["gate logits ema.gate"].summary()
    assert logits["in_dim"] == 8 and logits["n_samples"] == 4
    if kind == "quantum":
        assert logits["numerical_rank_mean"] <= 3  # the 3-qubit readout bounds the gate's rank
        assert spectra["circuit ema.gate"].in_dim == 3
    else:
        assert "circuit ema.gate" not in spectra
