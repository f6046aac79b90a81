"""rfdm.nets without torch: the typed configuration and its one-sentence errors, the data sets and their
scaling, the exact binomial interval, the Fréchet distance, the tau read-offs, the time-law quantile.
Every expected value is computed independently of the code under test."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.linalg import sqrtm
from scipy.optimize import brentq

from rfdm.errors import InvalidParameterError
from rfdm.nets import TrainNetConfig, evaluation_steps, load_dataset
from rfdm.nets.data import as_images, standardize
from rfdm.nets.metrics import clopper_pearson, frechet_distance, tau_gen, tau_mem
from rfdm.time_integrated import time_law_quantile

ROOT = Path(__file__).resolve().parent.parent


def test_import_and_config_without_torch():
    """`import rfdm` and rfdm.nets' config work with torch made unimportable; asking for cuda then says how to
    install it (one sentence)."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "import rfdm, rfdm.nets\n"
            "c = rfdm.nets.TrainNetConfig(data='gaussian', n_train=8)\n"
            "assert c.device == 'cpu'\n"
            "try:\n"
            "    rfdm.nets.TrainNetConfig(device='cuda')\n"
            "except rfdm.InvalidParameterError as e:\n"
            "    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ERR device cuda needs PyTorch" in out.stdout


@pytest.mark.parametrize("kwargs, words", [
    ({"arch": "transformer"}, "unknown architecture"),
    ({"width": 0}, "width must be a positive integer"),
    ({"data": "/nonexistent/x.npy"}, "does not exist"),
    ({"data": "cifar"}, "must be digits, gaussian, mixture or a .npy file"),
    ({"optimizer": "lbfgs"}, "unknown optimizer"),
    ({"t_law": "beta"}, "time law"),
    ({"t_min": 2.0, "t_max": 1.0}, "t_min must be < t_max"),
    ({"lr": -1}, "lr must be > 0"),
    ({"n_train": 1}, "n_train >= 2"),
    ({"device": "tpu"}, "unknown device"),
])
def test_bad_options_one_sentence(kwargs, words):
    with pytest.raises(InvalidParameterError) as err:
        TrainNetConfig(**kwargs)
    msg = str(err.value)
    assert words in msg and msg.endswith(".") and msg.count(". ") == 0


def test_cuda_without_gpu_is_one_sentence():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InvalidParameterError, match="no CUDA GPU is available"):
        TrainNetConfig(device="cuda")


def test_image_array_of_wrong_rank(tmp_path):
    for shape, words in (((10,), "rank 1"), ((4, 2, 2, 2, 2), "rank 5"), ((4, 5, 5, 4), "1 to 3 channels")):
        f = tmp_path / f"bad{len(shape)}.npy"
        np.save(f, np.random.default_rng(0).standard_normal(shape))
        cfg = TrainNetConfig(data=str(f), n_train=2)
        with pytest.raises(InvalidParameterError, match=words):
            load_dataset(cfg)


def test_digits_split_and_scaling():
    """Digits: 1797 points of 64 pixels, scaled so the mean per-pixel variance over the whole set is 1
    (recomputed here from scikit-learn's raw array); the split is disjoint and seeded."""
    from sklearn.datasets import load_digits

    raw = load_digits().data
    cfg = TrainNetConfig(n_train=100, n_test=300, seed=3)
    ds = load_dataset(cfg)
    assert ds.train.shape == (100, 64) and ds.test.shape == (300, 64)
    scale = math.sqrt(np.mean(raw.var(axis=0)))
    expect = (raw - raw.mean(0)) / scale
    # every training point is one of the scaled digits, and none is in the held-out set
    d_train = np.abs(ds.train[:, None, :] - expect[None]).max(-1)
    assert np.all(d_train.min(1) < 1e-12)
    idx_train = set(d_train.argmin(1).tolist())
    idx_test = set(np.abs(ds.test[:, None, :] - expect[None]).max(-1).argmin(1).tolist())
    assert not idx_train & idx_test
    again = load_dataset(TrainNetConfig(n_train=100, n_test=300, seed=3))
    assert np.array_equal(again.train, ds.train)
    unet = load_dataset(TrainNetConfig(n_train=10, arch="unet"))
    assert unet.shape == (1, 8, 8)


def test_image_file_layouts(tmp_path):
    x = np.random.default_rng(1).standard_normal((20, 6, 5, 3))
    f = tmp_path / "img.npy"
    np.save(f, x)
    ds = load_dataset(TrainNetConfig(data=str(f), arch="unet", n_train=10, width=4))
    assert ds.shape == (3, 6, 5)
    assert as_images(x[..., 0], "x").shape == (20, 1, 6, 5)
    z, info = standardize(x)
    assert abs(np.mean(z.reshape(20, -1).var(0)) - 1) < 1e-12
    with pytest.raises(InvalidParameterError, match="needs image data"):
        load_dataset(TrainNetConfig(data="gaussian", arch="unet"))


def _cp_by_bisection(k, n, conf):
    """Clopper–Pearson from its definition: low solves P(X >= k | p) = a/2, high solves P(X <= k | p) = a/2."""
    a = 1 - conf
    low = 0.0 if k == 0 else brentq(lambda p: stats.binom.sf(k - 1, n, p) - a / 2, 1e-15, 1 - 1e-15, xtol=1e-14)
    high = 1.0 if k == n else brentq(lambda p: stats.binom.cdf(k, n, p) - a / 2, 1e-15, 1 - 1e-15, xtol=1e-14)
    return low, high


@pytest.mark.parametrize("k, n, conf", [(0, 100, 0.95), (3, 100, 0.95), (50, 100, 0.9), (200, 200, 0.95)])
def test_clopper_pearson_matches_definition(k, n, conf):
    got = clopper_pearson(k, n, conf)
    want = _cp_by_bisection(k, n, conf)
    assert got == pytest.approx(want, abs=1e-9)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 2, 5), rng.uniform(0.5, 2, 5)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    # commuting (diagonal) covariances: |m1 - m2|^2 + sum (sqrt a - sqrt b)^2
    want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(want, rel=1e-12)
    # general covariances: Tr C1 + Tr C2 - 2 Tr sqrtm(C1 C2) (scipy's Schur-based sqrtm)
    G1, G2 = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    C1, C2 = G1 @ G1.T + 0.1 * np.eye(5), G2 @ G2.T + 0.1 * np.eye(5)
    want = np.sum((m1 - m2) ** 2) + np.trace(C1) + np.trace(C2) - 2 * np.trace(sqrtm(C1 @ C2)).real
    assert frechet_distance(m1, C1, m2, C2) == pytest.approx(want, rel=1e-9)
    assert frechet_distance(m1, C1, m1, C1) == pytest.approx(0.0, abs=1e-9)


def test_tau_readoffs():
    steps = [0, 10, 100, 1000, 10000]
    assert tau_mem(steps, [0, 0, 0.01, 0.3, 0.9], 0.02) == (1000, [100, 1000])
    assert tau_mem(steps, [0, 0, 0, 0, 0.02], 0.02) == (None, None)   # strictly above the level
    # log scale: first 1000 -> best 1: bound log 1 + 0.2 log 1000, i.e. q <= 1000^0.2 = 3.98, first at step 100
    assert tau_gen(steps, [1000, 50, 3.9, 1.0, 1.5], 0.2) == (100, [10, 100], "log")
    # a value <= 0 (energy distance): linear, bound -1 + 0.1 * 11 = 0.1, first reached at step 1000
    assert tau_gen(steps, [10, 5, 1.8, 0.05, -1.0], 0.1) == (1000, [100, 1000], "linear")


def test_evaluation_steps():
    s = evaluation_steps(TrainNetConfig(steps=1000, evals_per_decade=2))
    assert s[0] == 0 and s[-1] == 1000 and s == sorted(set(s))
    assert len(s) == 8   # 0 and 7 points log-spaced from 1 to 1000 (2 per decade, ends included)
    assert evaluation_steps(TrainNetConfig(steps=10, eval_every=4)) == [0, 4, 8, 10]


@pytest.mark.parametrize("law", ["uniform", "log-uniform"])
def test_time_law_quantile(law):
    """Q^{-1} inverts the CDF of the law, written here from its density; draws pass a KS test against it."""
    t_min, t_max = 0.01, 3.0
    if law == "uniform":
        cdf = lambda t: (t - t_min) / (t_max - t_min)  # noqa: E731
    else:
        cdf = lambda t: np.log(t / t_min) / np.log(t_max / t_min)  # noqa: E731
    u = np.random.default_rng(0).random(4000)
    t = time_law_quantile(u, t_min, t_max, law)
    assert np.allclose(cdf(t), u, atol=1e-12, rtol=0)
    assert stats.kstest(t, cdf).pvalue > 1e-3
    with pytest.raises(InvalidParameterError):
        time_law_quantile(u, t_min, t_max, "cosine")


def test_digits_fid_separates_digits_from_noise(tmp_path):
    """The digits FID of two disjoint halves of the digits is far below that of Gaussian noise of the same
    per-pixel variance against the digits (the classifier's features tell digits from noise); the classifier
    is trained once and then loaded from the cache with the same weights."""
    from rfdm.nets.data import load_array
    from rfdm.nets.metrics import DigitsFeatures

    feats = DigitsFeatures(directory=tmp_path)
    assert not feats.cached and feats.accuracy > 0.95
    again = DigitsFeatures(directory=tmp_path)
    assert again.cached and np.array_equal(again.W1, feats.W1)
    x, _ = load_array("digits")
    x = x.reshape(len(x), -1)
    perm = np.random.default_rng(0).permutation(len(x))
    a, b = x[perm[:800]], x[perm[800:1600]]
    noise = np.random.default_rng(1).standard_normal(a.shape)
    assert feats.fid(a, b) < 0.05 * feats.fid(noise, b)
