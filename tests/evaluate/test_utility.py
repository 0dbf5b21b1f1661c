import json

import numpy as np
import pytest

from qmedgen.cli import main
from qmedgen.errors import ConfigError, DataError
from qmedgen.evaluate import utility as U
from qmedgen.images import write_samples
from qmedgen.report.markdown import utility_markdown

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
    ops = ("crop", "hflip", "vflip", "rot90", "rotate", "color")
    a = U.augment(x * 2 - 1, ops, torch.Generator().manual_seed(1))
    b = U.augment(x * 2 - 1, ops, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x * 2 - 1)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(U.augment(x, (), torch.Generator()), x)


def test_run_utility_arms_seeds_and_comparisons(blood):
    train, test = blood
    syn = (noisy_copy(train.images, 8.0), train.labels)
    cfg = U.UtilityConfig(arms=("real", "real+syn", "syn"), ratios=(0.5, 1.0), seeds=(0, 1), epochs=0.5,
                          batch_size=8, progress=False, device="cpu")
    res = U.run_utility((train.images[:40], train.labels[:40]), (test.images, test.labels), 8, "multi-class", syn,
                        cfg, dataset="embedded-bloodmnist")
    assert list(res["summary"]) == ["real", "real+syn@0.5", "real+syn@1", "syn"]
    assert res["runs"]["real+syn@0.5"]["0"]["n_train"] == 60 and res["runs"]["syn"]["1"]["n_train"] == 100
    assert set(res["comparisons"]) == {"real+syn@0.5", "real+syn@1", "syn"}
    s = res["summary"]["real"]["accuracy"]
    assert s["n"] == 2 and s["ci_low"] <= s["mean"] <= s["ci_high"]
    md = utility_markdown(res)
    assert "| real+syn@1 |" in md and "Paired differences" in md


def test_train_classifier_is_seeded(blood):
    train, test = blood
    p = [U.predict_proba(U.train_classifier(train.images, train.labels, 8, epochs=0.2, batch_size=8, seed=3,
                                            progress=False, device="cpu"), test.images[:10]) for _ in range(2)]
    np.testing.assert_array_equal(p[0], p[1])


def test_run_utility_rejects_bad_synthetic(blood):
    train, test = blood
    cfg = U.UtilityConfig(arms=("real", "syn"), seeds=(0,), epochs=0.1, progress=False, device="cpu")
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
    out = write_samples(noisy_copy(ds.images, 5.0), ds.labels, tmp_path / "s", pngs=False)
    code = main(["utility", str(out), "--data", "embedded-retinamnist", "--n-per-class", "5", "--seeds", "0", "1",
                 "--arms", "real", "syn", "--epochs", "0.5", "--batch-size", "8", "--quiet", "--device", "cpu"])
    assert code == 0
    res = json.loads((out / "utility.json").read_text())
    assert {"qwk", "mae", "macro_auc", "balanced_accuracy"} <= set(res["summary"]["real"])
    assert res["settings"]["n_real_train"] == 25


def test_candidate_policies_stay_label_preserving():
    import torch

    from qmedgen.data.catalog import label_preserving_ops

    for name, ch in (("organamnist", 1), ("mnist", 1), ("bloodmnist", 3), ("retinamnist", 3)):
        cands = U.candidate_policies(name, ch)
        assert "none" in cands and any("mixup" in p for p in cands.values())
        for policy in cands.values():
            assert set(policy) - {"mixup"} <= set(label_preserving_ops(name, ch))
    # end to end: an image bright on its left half stays bright on the left under every organ-set policy
    x = -torch.ones(64, 1, 28, 28)
    x[..., :14] = 1.0
    for policy in U.candidate_policies("organamnist", 1).values():
        a = U.augment(x, tuple(p for p in policy if p != "mixup"), torch.Generator().manual_seed(0))
        assert bool((a[..., :12].mean((1, 2, 3)) > a[..., 16:].mean((1, 2, 3))).all()), policy
    # while the blood-cell policy does mirror some of them
    a = U.augment(x.expand(-1, 3, -1, -1), U.candidate_policies("bloodmnist", 3)["crop+hflip+vflip+rot90"],
                  torch.Generator().manual_seed(0))
    assert bool((a[..., :12].mean((1, 2, 3)) < a[..., 16:].mean((1, 2, 3))).any())


def test_validation_split_is_stratified_and_disjoint():
    y = np.repeat(np.arange(4), [10, 5, 2, 1])
    tr, va = U.validation_split(y, 0.2, seed=0)
    assert not set(tr) & set(va) and len(tr) + len(va) == len(y)
    assert [int((y[va] == c).sum()) for c in range(4)] == [2, 1, 1, 0]
    assert all((y[tr] == c).any() for c in range(4))
    np.testing.assert_array_equal(U.validation_split(y, 0.2, seed=0)[1], va)


def test_every_arm_gets_the_same_epochs():
    assert U.steps_for_epochs(80, 100, 64) == 125
    assert U.steps_for_epochs(240, 100, 64) == 375  # real + 2x synthetic: three times the steps
    assert U.steps_for_epochs(5, 10, 64) == 10     # batch capped at the set size


def test_select_policy_uses_validation_only_and_breaks_ties_simply(monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (40, 28, 28, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(4), 10)
    scores = {(): 0.3, ("crop",): 0.5, ("crop", "hflip", "vflip", "rot90"): 0.7,
              ("crop", "hflip", "vflip", "rot90", "rotate"): 0.7}
    seen = []
    monkeypatch.setattr(U, "_fit_on", lambda data, n, cfg, policy, seed, desc: policy)
    monkeypatch.setattr(U, "_score", lambda policy, data, task: (seen.append(len(data[0])), {
        "balanced_accuracy": scores.get(policy, 0.1)})[1])
    sel = U.select_policy((images, labels), 4, "multi-class", U.UtilityConfig(), "bloodmnist", seed=0)
    assert sel["policy"] == ("crop", "hflip", "vflip", "rot90") and sel["policy_name"] == "crop+hflip+vflip+rot90"
    assert set(seen) == {8} and sel["n_val"] == 8 and sel["n_train"] == 32
    fixed = U.select_policy((images, labels), 4, "multi-class", U.UtilityConfig(augment=("crop",)), "x", 0)
    assert fixed["policy"] == ("crop",) and fixed["val"] == {}


def test_real_arms_are_shared_through_the_cache(blood, monkeypatch):
    train, test = blood
    syn = (noisy_copy(train.images, 8.0), train.labels)
    cfg = U.UtilityConfig(arms=("real", "real-noaug", "real+syn", "real+syn@val", "syn>real"), ratios=(0.5, 1.0),
                          seeds=(0,), epochs=0.3, pretrain_epochs=0.2, batch_size=8, progress=False, device="cpu")
    cache: dict = {}
    first = U.run_utility((train.images, train.labels), (test.images, test.labels), 8, "multi-class", syn, cfg,
                          dataset="embedded-bloodmnist", cache=cache)
    assert len(cache) == 1 and set(next(iter(cache.values()))["arms"]) == {"real", "real-noaug"}
    assert first["selection"]["0"]["ratio"] in (0.5, 1.0) and first["runs"]["syn>real"]["0"]["n_train"] == 100
    calls = []
    real_train_classifier = U.train_classifier
    monkeypatch.setattr(U, "train_classifier", lambda *a, **k: (calls.append(k.get("desc")),
                                                                real_train_classifier(*a, **k))[1])
    second = U.run_utility((train.images, train.labels), (test.images, test.labels), 8, "multi-class", syn, cfg,
                           dataset="embedded-bloodmnist", cache=cache)
    assert "real" not in calls and "real-noaug" not in calls and not any(c.startswith("val:") and "@" not in c
                                                                         for c in calls)
    assert second["runs"]["real"] == first["runs"]["real"]
    assert second["runs"]["real+syn@1"] == first["runs"]["real+syn@1"]  # seeded: the same


def test_filter_drops_copies_before_the_synthetic_arms(blood):
    train, test = blood
    copies = (train.images.copy(), train.labels.copy())  # exact copies of the training images: all near copies
    cfg = U.UtilityConfig(arms=("real", "real+syn"), ratios=(1.0,), seeds=(0,), epochs=0.3, batch_size=8,
                          augment=("crop",), filter=True, progress=False, device="cpu")
    syn = (np.concatenate([copies[0], noisy_copy(train.images, 40.0)]), np.concatenate([copies[1], train.labels]))
    res = U.run_utility((train.images, train.labels), (test.images, test.labels), 8, "multi-class", syn, cfg,
                        dataset="embedded-bloodmnist")
    assert res["filter"]["per_reason"]["near-copy"] >= len(train.images)
    assert res["settings"]["n_synthetic"] == res["filter"]["kept"] <= len(train.images)
