import math

import numpy as np
import pytest
import torch

from qmedgen.analysis.ansatz import (
    ScanConfig,
    entangling_capability,
    expressibility,
    gradient_variance,
    haar_fidelity_bins,
    meyer_wallach,
    plot_scan,
    preset_ansatz,
    scan,
)
from qmedgen.cli import main
from qmedgen.errors import ConfigError
from qmedgen.quantum import Ansatz, simulate


def test_meyer_wallach_closed_forms():
    product = Ansatz(3, 2, encoding="ry", rotations=("ry", "rz"), entangler="none")
    res = entangling_capability(product, 50, torch.Generator().manual_seed(0))
    assert res["mean"] == pytest.approx(0.0, abs=1e-10)
    bell = Ansatz(2, 1, encoding="none", rotations=("ry",), entangler="cnot-chain")
    w = torch.tensor([[[math.pi / 2, 0.0]]], dtype=torch.float64)
    assert float(meyer_wallach(simulate(bell, torch.zeros(2, dtype=torch.float64), w))) == pytest.approx(1.0)
    ghz = Ansatz(3, 1, encoding="none", rotations=("ry",), entangler="cnot-chain")
    w = torch.tensor([[[math.pi / 2, 0.0, 0.0]]], dtype=torch.float64)
    assert float(meyer_wallach(simulate(ghz, torch.zeros(3, dtype=torch.float64), w))) == pytest.approx(1.0)


def test_haar_bins_are_a_distribution_and_haar_states_score_low():
    q = haar_fidelity_bins(8, 75)
    assert q.sum() == pytest.approx(1.0) and (q > 0).all()
    # first bin mass = 1 - (1 - 1/75)^(N-1)
    assert q[0] == pytest.approx(1 - (1 - 1 / 75) ** 7)


def test_expressibility_idle_vs_deep_random():
    g = torch.Generator().manual_seed(0)
    idle = Ansatz(3, 1, encoding="none", rotations=("rz",), entangler="none")  # only phases on |000>: F = 1
    deep = preset_ansatz("mediqgan", 3, 6)
    kl_idle = expressibility(idle, 300, generator=g)["kl"]
    kl_deep = expressibility(deep, 1500, generator=g)["kl"]
    assert kl_idle > 5.0
    assert kl_deep < 0.3
    assert kl_deep < kl_idle


def test_gradient_variance_vanishes_with_qubits_for_global_cost():
    g = torch.Generator().manual_seed(0)
    v = []
    for n in (2, 4, 6):
        a = Ansatz(n, 1, encoding="none", rotations=("ry",), entangler="none")
        v.append(gradient_variance(a, 1500, "global", g)["var_first"])
    # product RY circuit, parity cost: Var[dC/dtheta_1] = (1/2)^n exactly
    np.testing.assert_allclose(v, [0.25, 0.0625, 0.015625], rtol=0.2)
    assert v[0] > v[1] > v[2]
    with pytest.raises(ConfigError, match="unknown cost"):
        gradient_variance(a, 10, "bogus")


def test_scan_json_and_figures(tmp_path):
    cfg = ScanConfig(grad_samples=20, fidelity_pairs=60, mw_samples=20, bins=20, costs=("mean", "global"))
    res = scan("qdiffusion", [2, 3], [1], cfg)
    assert len(res["results"]) == 2 and res["ansatz"]["entangler"] == "cnot-chain"
    row = res["results"][0]
    assert set(row["gradient"]) == {"mean", "global"} and "kl" in row["expressibility"]
    paths = plot_scan(res, tmp_path)
    assert len(paths) == 4 and all(p.is_file() for p in paths)


def test_cli_analyze_ansatz(tmp_path, capsys):
    rc = main(["analyze", "ansatz", "--preset", "mediqgan", "--qubits", "2", "--depths", "1,2", "--grad-samples",
               "16", "--pairs", "40", "--mw-samples", "16", "--bins", "10", "--out", str(tmp_path)])
    assert rc == 0
    assert (tmp_path / "ansatz_mediqgan.json").is_file()
    assert (tmp_path / "ansatz_mediqgan_expressibility.png").is_file()
    assert "mediqgan" in capsys.readouterr().out


def test_linearised_expval_has_exact_values_and_input_jacobian():
    from qmedgen.analysis.ansatz import autograd_expval, linearised_expval

    a = preset_ansatz("qdiffusion", 3, 2)
    g = torch.Generator().manual_seed(0)
    w = torch.rand(2, *a.weight_shape, generator=g, dtype=torch.float64)
    x = torch.rand(4, 2, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(linearised_expval(a, x, w), autograd_expval(a, x, w), atol=1e-10)
    for fn in (linearised_expval, autograd_expval):
        j = torch.autograd.functional.jacobian(lambda xx, fn=fn: fn(a, xx, w).sum(0), x)
        if fn is linearised_expval:
            j_lin = j
    assert torch.allclose(j_lin, j, atol=1e-10)
