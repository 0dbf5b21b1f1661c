import json

import numpy as np
import pytest

from qmedgen.cli import main
from qmedgen.errors import ConfigError, DataError
from qmedgen.evaluate import utility as U
from qmedgen.evaluate.samples import save_samples

from .conftest import noisy_copy


def test_macro_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    probs = rng.dirichlet(np.ones(3), size=60)
    probs[np.arange(60), y] += 0.3 * rng.random(60)
    aucs = []
    for c in range(3):
        pos, neg = probs[y == c, c], probs[y != c, c]
        aucs.append(np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg]))
    assert U.macro_auc(probs, y) == pytest.approx(np.mean(aucs))
    perfect = np.eye(3)[y]
    assert U.macro_auc(perfect, y) == 1.0


def test_qwk_and_classification_metrics():
    y = np.array([0, 1, 2, 3, 4, 0, 1])
    assert U.quadratic_weighted_kappa(y, y, 5) == pytest.approx(1.0)
    off = U.quadratic_weighted_kappa(y, np.clip(y + 1, 0, 4), 5)
    far = U.quadratic_weighted_kappa(y, 4 - y, 5)
    assert far < off < 1
    probs = np.eye(5)[np.array([0, 1, 2, 3, 3, 0, 0])]
    m = U.classification_metrics(probs, y, "ordinal-regression")
    assert m["accuracy"] == pytest.approx(5 / 7) and m["mae"] == pytest.approx(2 / 7)
    assert m["balanced_accuracy"] == pytest.approx(np.mean([1, 0.5, 1, 1, 0]))
    assert "qwk" not in U.classification_metrics(probs, y, "multi-class")


def test_augment_keeps_shape_and_is_seeded():
    import torch

    x = torch.rand(5, 3, 28, 28)
    a = U.augment(x, ("crop", "flip"), torch.Generator().manual_seed(1))
    b = U.augment(x, ("crop", "flip"), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(U.augment(x, (), torch.Generator()), x)


def test_run_utility_arms_seeds_and_comparisons(blood):
    train, test = blood
    syn = (noisy_copy(train.images, 8.0), train.labels)
    cfg = U.UtilityConfig(arms=("real", "real+syn", "syn"), ratios=(0.5, 1.0), seeds=(0, 1), steps=3, batch_size=8,
                          progress=False, device="cpu")
    res = U.run_utility((train.images[:40], train.labels[:40]), (test.images, test.labels), 8, "multi-class", syn,
                        cfg, dataset="embedded-bloodmnist")
    assert list(res["summary"]) == ["real", "real+syn@0.5", "real+syn@1", "syn"]
    assert res["runs"]["real+syn@0.5"]["0"]["n_train"] == 60 and res["runs"]["syn"]["1"]["n_train"] == 100
    assert set(res["comparisons"]) == {"real+syn@0.5", "real+syn@1", "syn"}
    s = res["summary"]["real"]["accuracy"]
    assert s["n"] == 2 and s["ci_low"] <= s["mean"] <= s["ci_high"]
    md = U.utility_markdown(res)
    assert "| real+syn@1 |" in md and "Paired differences" in md


def test_train_classifier_is_seeded(blood):
    train, test = blood
    p = [U.predict_proba(U.train_classifier(train.images, train.labels, 8, steps=2, batch_size=8, seed=3,
                                            progress=False, device="cpu"), test.images[:10]) for _ in range(2)]
    np.testing.assert_array_equal(p[0], p[1])


def test_run_utility_rejects_bad_synthetic(blood):
    train, test = blood
    cfg = U.UtilityConfig(arms=("real", "syn"), seeds=(0,), steps=1, progress=False, device="cpu")
    with pytest.raises(DataError, match="channel counts differ"):
        U.run_utility((train.images, train.labels), (test.images, test.labels), 8, "multi-class",
                      (train.images[..., :1], train.labels), cfg)
    with pytest.raises(DataError, match="outside the dataset's classes"):
        U.run_utility((train.images, train.labels), (test.images, test.labels), 8, "multi-class",
                      (train.images, train.labels + 10), cfg)
    with pytest.raises(ConfigError, match="unknown utility arm"):
        U.arm_names(U.UtilityConfig(arms=("bogus",)))


def test_cli_utility_retina_ordinal(tmp_path):
    from qmedgen.data import load_dataset

    ds = load_dataset("embedded-retinamnist", split="train")
    out = save_samples(tmp_path / "s", noisy_copy(ds.images, 5.0), ds.labels, pngs=False)
    code = main(["utility", str(out), "--data", "embedded-retinamnist", "--n-per-class", "5", "--seeds", "0", "1",
                 "--arms", "real", "syn", "--steps", "3", "--batch-size", "8", "--quiet", "--device", "cpu"])
    assert code == 0
    res = json.loads((out / "utility.json").read_text())
    assert {"qwk", "mae", "macro_auc", "balanced_accuracy"} <= set(res["summary"]["real"])
    assert res["settings"]["n_real_train"] == 25
