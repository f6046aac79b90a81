"""Data sets for network training (no torch needed): digits, Gaussian, mixture, any .npy; held-out split.

Scaling convention (docs/theory.md §1 uses data of unit variance per component, Sigma = I): image and file data are
centred per component and divided by one overall scale so that the mean per-component variance is 1,
(1/d) sum_i Var(x_i) = 1 on the whole data set (a per-pixel scaling would blow up the constant border pixels
of the digits).  The Gaussian N(0, I_dim) and the mixture (1/2) N(+-m, I) are used as drawn.

Images are kept as (n, C, H, W) float64 arrays (channels first, as torch's convolutions want); ``flat``
gives the (n, d) view used by the MLP, the nearest-neighbour search and the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data import GaussianData, MixtureData
from ..errors import InvalidParameterError, check_finite_array
from .config import TrainNetConfig

#: spawn-key tags of the seed streams (kept apart from each other)
STREAM_SPLIT, STREAM_SYNTH, STREAM_EVAL, STREAM_SAMPLER, STREAM_INIT, STREAM_TRAIN = range(1, 7)


def stream(seed: int, tag: int) -> np.random.Generator:
    """The NumPy generator of one use of the run's seed: SeedSequence(seed, spawn_key=(tag,))."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(tag,))))


@dataclass
class NetData:
    """A data set split into training and held-out points; ``shape`` is the per-point shape ((d,) for
    vectors, (C, H, W) for images); ``train``/``test`` have shape (n, *shape), float64."""

    train: np.ndarray
    test: np.ndarray
    shape: tuple
    name: str
    info: dict = field(default_factory=dict)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def d(self) -> int:
        return int(np.prod(self.shape))

    def flat(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def standardize(x: np.ndarray) -> tuple[np.ndarray, dict]:
    """Centre each component, then divide by sqrt((1/d) sum_i Var(x_i)) (mean per-component variance 1)."""
    flat = x.reshape(len(x), -1)
    mean = flat.mean(axis=0)
    scale = float(np.sqrt(flat.var(axis=0).mean()))
    if not scale > 0:
        raise InvalidParameterError("the data set has zero variance; it cannot be scaled to unit variance.")
    return ((flat - mean) / scale).reshape(x.shape), {"scale": scale}


def upsample_images(x: np.ndarray, factor: int) -> np.ndarray:
    """(n, C, H, W) -> (n, C, factor H, factor W) by bilinear interpolation (scipy.ndimage.zoom, order 1)."""
    if factor == 1:
        return x
    from scipy.ndimage import zoom

    return zoom(x, (1, 1, factor, factor), order=1)


def as_images(arr: np.ndarray, name: str) -> np.ndarray:
    """(n, H, W) or (n, H, W, C) with C in 1..3 -> (n, C, H, W); (n, d) stays (n, d); anything else raises."""
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3:
        return arr[:, None, :, :]
    if arr.ndim == 4:
        if not 1 <= arr.shape[3] <= 3:
            raise InvalidParameterError(f"an image array must be (n, H, W) or (n, H, W, C) with 1 to 3 channels, "
                                        f"got shape {arr.shape} from {name}.")
        return np.moveaxis(arr, 3, 1)
    raise InvalidParameterError(f"the data array must be (n, d) vectors or (n, H, W[, C]) images, got an array of "
                                f"rank {arr.ndim} (shape {arr.shape}) from {name}.")


def load_digits_images() -> np.ndarray:
    """scikit-learn's 1797 digits as (1797, 1, 8, 8) float64 (pixel values 0..16), shipped with scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InvalidParameterError("data digits needs scikit-learn, which is not installed; install the extra: "
                                    "pip install 'rfdm[nets]'.") from None
    return load_digits().images.astype(np.float64)[:, None, :, :]


def digits_labels() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().target.astype(np.int64)


def load_array(data: str) -> tuple[np.ndarray, dict]:
    """The full data array of a config's ``data`` before the split (digits or a .npy file), scaled."""
    if data == "digits":
        raw = load_digits_images()
    else:
        try:
            raw = np.load(data, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            reason = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__
            raise InvalidParameterError(f"cannot read the dataset file {data} as a .npy array ({reason}).") from None
        raw = as_images(check_finite_array(f"the data in {data}", raw), data)
    x, info = standardize(raw)
    return x, info


def load_dataset(config: TrainNetConfig) -> NetData:
    """The training and held-out sets of a run (the split is a permutation drawn from the run's seed)."""
    n, n_test = config.n_train, config.n_test
    if config.data in ("gaussian", "mixture"):
        rng = stream(config.seed, STREAM_SYNTH)
        if config.data == "gaussian":
            law = GaussianData(config.dim)
            x = law.sample(n + n_test, rng)
        else:
            law = MixtureData(config.dim, m_norm=config.m_norm)
            x = law.sample(n + n_test, rng)
        info = {"law": law.describe(), "scale": 1.0}
        if config.arch == "unet":
            raise InvalidParameterError("the unet architecture needs image data (digits or an (n, H, W[, C]) array), "
                                        f"not {config.data} vectors; use arch mlp.")
        return NetData(x[:n], x[n:], (config.dim,), config.data, info)
    x, info = load_array(config.data)
    if x.ndim == 4:
        x = upsample_images(x, config.upsample)
    elif config.upsample != 1:
        raise InvalidParameterError("upsample applies to image data only.")
    if config.arch == "unet" and x.ndim != 4:
        raise InvalidParameterError(f"the unet architecture needs image data (n, H, W[, C]), got vectors of shape "
                                    f"{x.shape}; use arch mlp.")
    info.update(image_shape=list(x.shape[1:]) if x.ndim == 4 else None)
    if config.arch == "mlp":
        x = x.reshape(len(x), -1)  # the MLP takes flattened images
    total = x.shape[0]
    if n + 2 > total:
        raise InvalidParameterError(f"n_train = {n} leaves fewer than 2 held-out points of the {total} in "
                                    f"{config.data}.")
    perm = stream(config.seed, STREAM_SPLIT).permutation(total)
    train = x[perm[:n]]
    test = x[perm[n:n + n_test]]
    info.update(total=total)
    return NetData(np.ascontiguousarray(train), np.ascontiguousarray(test), tuple(x.shape[1:]), config.data, info)
