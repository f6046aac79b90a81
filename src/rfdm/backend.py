"""Array backends: the heavy kernels run on NumPy (the default) or on PyTorch tensors (CPU or CUDA).

The kernels (exact U assembly and its Hermite coefficients, the eigendecomposition of U, the sampler's
random-features score, the nearest-neighbour search) are written once against a :class:`Backend`: the
array-API namespace ``backend.xp`` (``numpy`` itself, or ``array_api_compat.torch``), operators (``@``,
``+=``, slicing) and the few helpers below for what the array API leaves out (in-place cumsum/clip, top-k,
stable argsort, eigh, erf/ndtr).  Everything is float64 (torch's default float32 is never used).  Results
leave the kernels as NumPy float64 arrays; random draws stay on NumPy generators, so a seed gives the same
draws on every device.

``resolve_device(device)``: None -> the default device (NumPy unless :func:`default_device` set another);
"cpu" -> NumPy; "torch" or "torch-cpu" -> PyTorch on the CPU (what the
tests use); "cuda" or "cuda:N" -> PyTorch on a GPU.  torch and array-api-compat (the extra ``rfdm[torch]``)
are imported only when a torch device is asked for.  Bad devices raise InvalidParameterError.
"""

from __future__ import annotations

import contextlib
import contextvars
import re

import numpy as np

from .errors import InvalidParameterError

#: the device names accepted, for messages and --help
DEVICE_CHOICES = "cpu (NumPy), torch-cpu, cuda or cuda:N"


class Backend:
    """The NumPy backend (the default); :class:`TorchBackend` has the same methods on torch tensors."""

    name = "cpu"
    is_numpy = True
    device = None
    xp = np

    # -- arrays --------------------------------------------------------------------------------------
    def asarray(self, x):
        """``x`` as a float64 array of this backend (no copy when it already is one)."""
        return np.asarray(x, dtype=np.float64)

    def asindex(self, x):
        """Integer indices as an int64 array of this backend."""
        return np.asarray(x, dtype=np.int64)

    def to_numpy(self, x) -> np.ndarray:
        """A NumPy array (a host copy for device tensors; no copy for NumPy or CPU arrays)."""
        return np.asarray(x)

    def zeros(self, shape):
        return np.zeros(shape)

    def empty(self, shape):
        return np.empty(shape)

    def full(self, shape, value, integer: bool = False):
        return np.full(shape, value, dtype=np.int64 if integer else np.float64)

    def arange(self, start, stop=None):
        """int64 indices."""
        return np.arange(start, stop, dtype=np.int64) if stop is not None else np.arange(start, dtype=np.int64)

    def concat(self, arrays, axis: int = 0):
        return np.concatenate(arrays, axis=axis)

    # -- what the array API does not have ------------------------------------------------------------
    def argsort(self, x, axis: int = -1):
        """Stable argsort."""
        return np.argsort(x, axis=axis, kind="stable")

    def smallest_k(self, x, k: int):
        """Column indices (rows, k) of the k smallest entries of each row, in no particular order."""
        full = np.argpartition(x, k - 1, axis=1)
        part = full[:, :k].copy()
        del full
        return part

    def cumsum_(self, x, axis: int = -1):
        """Cumulative sum along ``axis``, in place."""
        return np.cumsum(x, axis=axis, out=x)

    def clip_min_(self, x, value: float):
        """max(x, value), in place."""
        return np.maximum(x, value, out=x)

    def ufunc(self, name: str):
        """The element-wise function ``name`` (tanh, erf, ndtr, exp, relu), called as f(x) or f(x, out=y)."""
        return _numpy_ufuncs()[name]

    def eigh(self, a, overwrite: bool = False):
        """Eigenvalues (ascending) and eigenvectors of the symmetric ``a``, as arrays of this backend.
        NumPy: LAPACK's MRRR driver through scipy, overwriting ``a`` when asked (``a`` is symmetric, so its
        transpose is a Fortran-ordered view that LAPACK can work in)."""
        import scipy.linalg

        return scipy.linalg.eigh(a.T if overwrite else a, overwrite_a=overwrite, driver="evr", check_finite=False)

    def sync(self) -> None:
        """Wait for queued device work (for timing); nothing to wait for on NumPy."""

    def describe(self) -> dict:
        """What a result records about where it was computed."""
        return {"device": self.name, "array_library": f"numpy {np.__version__}"}

    def __repr__(self):
        return f"Backend({self.name!r})"


_NUMPY_UFUNCS: dict = {}


def _numpy_ufuncs() -> dict:
    if not _NUMPY_UFUNCS:
        from scipy.special import erf, ndtr

        _NUMPY_UFUNCS.update(tanh=np.tanh, exp=np.exp, erf=erf, ndtr=ndtr,
                             relu=lambda x, out=None: np.maximum(x, 0.0, out=out))
    return _NUMPY_UFUNCS


class TorchBackend(Backend):
    """PyTorch tensors (float64) on one device; ``xp`` is ``array_api_compat.torch``."""

    is_numpy = False

    def __init__(self, torch, xp, device, name: str):
        self.torch, self.xp, self.device, self.name = torch, xp, device, name
        self._ufuncs = {"tanh": torch.tanh, "exp": torch.exp, "erf": torch.special.erf, "ndtr": torch.special.ndtr,
                        "relu": lambda x, out=None: torch.clamp(x, min=0.0, out=out)}

    def asarray(self, x):
        return self.torch.as_tensor(x, dtype=self.torch.float64, device=self.device)

    def asindex(self, x):
        return self.torch.as_tensor(x, dtype=self.torch.int64, device=self.device)

    def to_numpy(self, x) -> np.ndarray:
        if isinstance(x, self.torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def zeros(self, shape):
        return self.torch.zeros(shape, dtype=self.torch.float64, device=self.device)

    def empty(self, shape):
        return self.torch.empty(shape, dtype=self.torch.float64, device=self.device)

    def full(self, shape, value, integer: bool = False):
        dtype = self.torch.int64 if integer else self.torch.float64
        return self.torch.full(shape, value, dtype=dtype, device=self.device)

    def arange(self, start, stop=None):
        if stop is None:
            start, stop = 0, start
        return self.torch.arange(start, stop, dtype=self.torch.int64, device=self.device)

    def concat(self, arrays, axis: int = 0):
        return self.torch.cat(arrays, dim=axis)

    def argsort(self, x, axis: int = -1):
        return self.torch.argsort(x, dim=axis, stable=True)

    def smallest_k(self, x, k: int):
        return self.torch.topk(x, k, dim=1, largest=False, sorted=False).indices

    def cumsum_(self, x, axis: int = -1):
        return x.cumsum_(dim=axis)

    def clip_min_(self, x, value: float):
        return x.clamp_(min=value)

    def ufunc(self, name: str):
        return self._ufuncs[name]

    def eigh(self, a, overwrite: bool = False):
        """torch.linalg.eigh on the device (``a`` is not modified)."""
        return self.torch.linalg.eigh(self.asarray(a))

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def describe(self) -> dict:
        out = {"device": self.name, "array_library": f"torch {self.torch.__version__}"}
        if self.device.type == "cuda":
            out["gpu"] = self.torch.cuda.get_device_name(self.device)
        return out


NUMPY = Backend()
_TORCH: dict = {}
#: the backend used for device=None (set by :func:`default_device`): a context variable, so that threads and
#: asyncio tasks each see their own default and a nested block restores the outer one
_DEFAULT: contextvars.ContextVar = contextvars.ContextVar("rfdm_default_device", default=NUMPY)


@contextlib.contextmanager
def default_device(device):
    """Within the block, kernels called with ``device=None`` run on ``device`` (resolved first, so a bad name
    fails before any work): how ``rfdm figure/reproduce/... --device`` reach every kernel of a figure."""
    bk = resolve_device(device)
    token = _DEFAULT.set(bk)
    try:
        yield bk
    finally:
        _DEFAULT.reset(token)


def _import_torch(requested: str):
    try:
        import torch
        import array_api_compat.torch as xp
    except ImportError:
        raise InvalidParameterError(f"--device {requested} needs PyTorch and array-api-compat, which are not "
                                    "installed; install the extra: pip install 'rfdm[torch]'.") from None
    return torch, xp


def _torch_backend(device: str) -> TorchBackend:
    """The (cached) torch backend of a torch device string such as "cpu" or "cuda:0"."""
    if device not in _TORCH:
        torch, xp = _import_torch("torch-cpu" if device == "cpu" else device)
        dev = torch.device(device)
        _TORCH[device] = TorchBackend(torch, xp, dev, "torch-cpu" if dev.type == "cpu" else str(dev))
    return _TORCH[device]


_DEVICE_NAME = re.compile(r"cpu|numpy|torch|torch-cpu|cuda(?::\d+)?")


def check_device_name(device) -> str:
    """A device name, lower-cased, checked for syntax only (no torch import, no GPU needed): for settings
    resolved later on another machine (e.g. sweep points on SLURM nodes)."""
    key = str(device).strip().lower()
    if _DEVICE_NAME.fullmatch(key) is None:
        raise InvalidParameterError(f"unknown device {device!r}; choose {DEVICE_CHOICES}.")
    return key


def resolve_device(device=None) -> Backend:
    """The backend of a device name: None (the default, NumPy unless :func:`default_device` is active), "cpu"
    (NumPy), "torch"/"torch-cpu", "cuda" or "cuda:N".

    Raises InvalidParameterError (one sentence) for an unknown name, when torch is not installed, or when
    a CUDA device is asked for and torch sees none (or not that one)."""
    if isinstance(device, Backend):
        return device
    if device is None:
        return _DEFAULT.get()
    key = str(device).strip().lower()
    if key in ("cpu", "numpy"):
        return NUMPY
    if key in ("torch", "torch-cpu"):
        return _torch_backend("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", key)
    if match is None:
        raise InvalidParameterError(f"unknown device {device!r}; choose {DEVICE_CHOICES}.")
    torch, _ = _import_torch(key)
    if not torch.cuda.is_available():
        raise InvalidParameterError(f"--device {key} was given but no CUDA GPU is available "
                                    "(torch.cuda.is_available() is False); use --device cpu (the default).")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    count = torch.cuda.device_count()
    if index >= count:
        raise InvalidParameterError(f"--device {key} was given but only {count} CUDA GPU(s) are visible "
                                    f"(cuda:0 to cuda:{count - 1}).")
    return _torch_backend(f"cuda:{index}")


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def backend_of(*arrays) -> Backend:
    """The backend an array lives on: the torch backend of the first torch tensor, else NumPy."""
    for a in arrays:
        if _is_torch(a):
            return _torch_backend(str(a.device))
    return NUMPY


def elementwise(name: str, x, out=None):
    """The element-wise function ``name`` (tanh, erf, ndtr, exp, relu) on NumPy arrays (NumPy/SciPy) or
    torch tensors (torch), into ``out`` when given: the one place where activations dispatch."""
    f = backend_of(x).ufunc(name)
    return f(x) if out is None else f(x, out=out)
