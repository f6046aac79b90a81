"""The torch backend (rfdm.backend) against the NumPy path: the same kernels on torch tensors (here on the
CPU, "torch-cpu") agree with NumPy to rounding; bad devices give one sentence and exit status 2."""

import json
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("array_api_compat")

import rfdm  # noqa: E402
from rfdm import backend  # noqa: E402
from rfdm.activations import Activation  # noqa: E402
from rfdm.cli import main  # noqa: E402
from rfdm.metrics import memorization_fraction, nearest_neighbours  # noqa: E402
from rfdm.sampling import EmpiricalScore, sample, train_random_features  # noqa: E402

DEV = "torch-cpu"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / max(np.linalg.norm(b), 1e-300))


@pytest.fixture(scope="module")
def problem():
    law = rfdm.GaussianData(10, eigenvalues=(0.5, 2.0), rotation="random", seed=1)
    X = law.sample(30, np.random.default_rng(3))
    return law, X


# -- device resolution ---------------------------------------------------------------------------------

def test_resolve_device_names():
    assert backend.resolve_device(None) is backend.NUMPY
    assert backend.resolve_device("cpu").is_numpy
    b = backend.resolve_device("torch-cpu")
    assert not b.is_numpy and b.name == "torch-cpu" and backend.resolve_device("torch") is b
    x = b.asarray([1, 2])
    assert x.dtype == torch.float64 and backend.backend_of(x) is b and backend.backend_of(np.ones(2)).is_numpy
    assert b.zeros((2, 2)).dtype == torch.float64 and b.empty(3).dtype == torch.float64


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu", ""])
def test_unknown_device(name):
    with pytest.raises(rfdm.InvalidParameterError, match="unknown device"):
        backend.resolve_device(name)


def test_cuda_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(rfdm.InvalidParameterError, match="no CUDA GPU is available"):
            backend.resolve_device(name)


def test_torch_missing(monkeypatch):
    monkeypatch.setattr(backend, "_TORCH", {})
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    for name in ("torch-cpu", "cuda"):
        with pytest.raises(rfdm.InvalidParameterError, match=r"pip install 'rfdm\[torch\]'"):
            backend.resolve_device(name)
    assert backend.resolve_device("cpu").is_numpy  # NumPy needs no torch


@pytest.mark.parametrize("command", [["dynamics"], ["sample"]])
def test_cli_cuda_without_gpu(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    rc = main([*command, "--device", "cuda", "--out", str(out), "--json"])
    o, err = capsys.readouterr()
    assert rc == 2 and o == ""
    assert err.startswith("rfdm: error: --device cuda was given but no CUDA GPU is available")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_unknown_device(tmp_path, capsys):
    rc = main(["dynamics", "--device", "tpu", "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert rc == 2 and err.startswith("rfdm: error: unknown device 'tpu'") and err.count("\n") == 1


# -- kernels: torch-cpu against NumPy ------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["tanh", "relu", "erf"])
def test_statistics_agree(problem, activation):
    law, X = problem
    f = rfdm.RandomFeatures.sample(10, 80, activation, rng=2)
    for t in (0.02, 0.4):
        ref = rfdm.noise_averaged_statistics(f, X, t)
        # a tiny memory budget: several row blocks and data batches
        got = rfdm.noise_averaged_statistics(f, X, t, memory_budget=1, device=DEV)
        assert isinstance(got.U, np.ndarray) and got.U.dtype == np.float64
        assert got.info["truncation_order"] == ref.info["truncation_order"]
        assert got.info["direct_pairs"] == ref.info["direct_pairs"]
        assert rel(got.U, ref.U) < 1e-12 and rel(got.V, ref.V) < 1e-12
        pop = rfdm.population_statistics(f, law, t)
        pop_t = rfdm.population_statistics(f, law, t, device=DEV)
        assert rel(pop_t.U, pop.U) < 1e-12 and rel(pop_t.V, pop.V) < 1e-12 and rel(pop_t.Y, pop.Y) < 1e-12


def test_direct_pairs_and_custom_activation():
    """Strongly correlated pairs (d = 3) are integrated on the host; a NumPy-only activation is evaluated on
    the host and its coefficients moved to the device."""
    X = rfdm.GaussianData(3).sample(15, np.random.default_rng(1))
    f = rfdm.RandomFeatures.sample(3, 40, "relu", rng=2)
    ref = rfdm.noise_averaged_statistics(f, X, 0.3)
    got = rfdm.noise_averaged_statistics(f, X, 0.3, device=DEV)
    assert ref.info["direct_pairs"] > 0 and got.info["direct_pairs"] == ref.info["direct_pairs"]
    assert rel(got.U, ref.U) < 1e-12
    sine = Activation.from_function("sine", np.sin)
    f = rfdm.RandomFeatures.sample(6, 30, sine, rng=2)
    X = rfdm.GaussianData(6).sample(10, np.random.default_rng(1))
    assert rel(rfdm.noise_averaged_statistics(f, X, 0.2, device=DEV).U,
               rfdm.noise_averaged_statistics(f, X, 0.2).U) < 1e-12


def test_monte_carlo_same_draws(problem):
    _, X = problem
    f = rfdm.RandomFeatures.sample(10, 40, "tanh", rng=2)
    ref = rfdm.monte_carlo_statistics(f, X, 0.1, 2, rng=5, batch_size=7)
    got = rfdm.monte_carlo_statistics(f, X, 0.1, 2, rng=5, batch_size=7, device=DEV)
    assert rel(got.U, ref.U) < 1e-12 and rel(got.V, ref.V) < 1e-12


def test_gradient_flow_agrees(problem):
    law, X = problem
    f = rfdm.RandomFeatures.sample(10, 60, "tanh", rng=2)
    stats, pop = rfdm.noise_averaged_statistics(f, X, 0.1), rfdm.population_statistics(f, law, 0.1)
    A0 = np.random.default_rng(4).standard_normal((10, 60))
    ref = rfdm.GradientFlow(stats, pop, A0=A0)
    got = rfdm.GradientFlow(stats, pop, A0=A0, device=DEV)
    assert isinstance(got.eigenvalues, np.ndarray)
    assert np.max(np.abs(got.eigenvalues - ref.eigenvalues)) < 1e-12 * ref.eigenvalues[-1]
    tau = np.r_[0.0, np.logspace(-1, 6, 15), np.inf]
    c_ref, c_got = ref.curves(tau), got.curves(tau)
    for key in ("train_loss", "test_loss", "score_error"):
        np.testing.assert_allclose(c_got[key], c_ref[key], rtol=1e-12, atol=0)
    assert rel(got.weights(10.0), ref.weights(10.0)) < 1e-10


def test_sampler_same_samples(problem):
    law, X = problem
    f = rfdm.RandomFeatures.sample(10, 60, "tanh", rng=2)
    score = train_random_features(f, X, np.geomspace(0.01, 4, 3), [1e3])[0]
    kw = dict(T=4, t_min=0.01, steps=25, seed=9, record_times=[1.0], batch_size=7)
    ref = sample(score, 20, **kw)
    got = sample(score, 20, device=DEV, **kw)
    assert isinstance(got.samples, np.ndarray) and got.info["device"] == "torch-cpu"
    np.testing.assert_allclose(got.samples, ref.samples, rtol=0, atol=1e-10)
    np.testing.assert_allclose(got.recorded, ref.recorded, rtol=0, atol=1e-10)
    # a host-only source (the empirical score) gives the same samples too
    emp = EmpiricalScore(X)
    np.testing.assert_allclose(sample(emp, 10, device=DEV, **kw).samples, sample(emp, 10, **kw).samples,
                               rtol=0, atol=1e-12)
    # training on the device gives the same weights
    score_t = train_random_features(f, X, np.geomspace(0.01, 4, 3), [1e3], device=DEV)[0]
    assert rel(score_t.weights, score.weights) < 1e-10


def test_nearest_neighbours_agree():
    rng = np.random.default_rng(0)
    q, r = rng.standard_normal((70, 5)), rng.standard_normal((90, 5))
    d_ref, i_ref = nearest_neighbours(q, r, 3, memory_budget=3000)  # several blocks of each
    d_got, i_got = nearest_neighbours(q, r, 3, memory_budget=3000, device=DEV)
    assert i_got.dtype == np.int64 and np.array_equal(i_got, i_ref)
    np.testing.assert_allclose(d_got, d_ref, rtol=1e-12, atol=0)
    m_ref, m_got = memorization_fraction(q, r), memorization_fraction(q, r, device=DEV)
    assert m_got.n_memorized == m_ref.n_memorized
    np.testing.assert_allclose(m_got.ratios, m_ref.ratios, rtol=1e-12, atol=0)


def test_cli_dynamics_torch_cpu(tmp_path, capsys):
    args = ["dynamics", "--d", "8", "--psi-p", "4", "--psi-n", "2", "--t", "0.1", "--tau", "1,1e3,inf",
            "--quiet", "--json"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    ref = json.loads(capsys.readouterr()[0])
    assert main([*args, "--device", DEV, "--out", str(tmp_path / "b")]) == 0
    got = json.loads(capsys.readouterr()[0])
    assert ref["info"]["device"] == "cpu" and got["info"]["device"] == "torch-cpu"
    np.testing.assert_allclose(got["test_loss"][:-1], ref["test_loss"][:-1], rtol=1e-10)
    header = json.loads((tmp_path / "b" / "dynamics.json").read_text())["header"]
    assert header["device"]["device"] == "torch-cpu" and header["device"]["array_library"].startswith("torch")


def test_default_device_reaches_kernels_called_without_a_device():
    """rfdm.backend.default_device: the time-integrated model (which passes no device) computed under
    default_device("torch-cpu") equals the NumPy result to rounding; results record the device in effect."""
    from rfdm.backend import default_device, resolve_device
    from rfdm.results import provenance
    from rfdm.time_integrated import TimeIntegratedModel

    f = rfdm.RandomFeatures.sample(6, 24, "tanh", 0)
    X = rfdm.GaussianData(6).sample(10, np.random.default_rng(1))
    model = TimeIntegratedModel.sample(f, 2, t_rtol=1e-4)
    ref = model.training_statistics(X).U
    with default_device("torch-cpu") as bk:
        assert resolve_device(None) is bk and provenance({}, 0)["device"]["device"] == "torch-cpu"
        U = TimeIntegratedModel.sample(f, 2, t_rtol=1e-4).training_statistics(X).U
    assert resolve_device(None).name == "cpu" and provenance({}, 0)["device"]["device"] == "cpu"
    assert isinstance(U, np.ndarray)
    np.testing.assert_allclose(U, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("command", [["figure", "spectrum-isotropic"], ["reproduce", "--preset", "tiny"],
                                     ["timescales"], ["spectrum"], ["outlier"], ["regimes"]])
def test_every_command_refuses_cuda_without_a_gpu(tmp_path, capsys, monkeypatch, command):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rc = main([*command, "--device", "cuda", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rfdm: error:") and "no CUDA GPU" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
