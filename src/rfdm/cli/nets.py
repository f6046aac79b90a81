"""The `train-net` command: a PyTorch score network trained by denoising score matching, measured along
training (rfdm.nets; options generated from :class:`rfdm.nets.config.TrainNetConfig`)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidParameterError
from .common import add_config_options, add_output_options, check_output_dir, config_from_args, emit


def add_commands(sub) -> None:
    from ..nets.config import TrainNetConfig

    p = sub.add_parser("train-net", help="train a PyTorch score network (residual MLP or U-Net) by denoising score "
                       "matching and measure f_mem, losses and quality along training (needs pip install "
                       "'rfdm[nets]').",
                       description="Train a score network on digits, Gaussian, mixture or .npy data by denoising "
                       "score matching on the OU process (docs/nets.md); train/held-out loss, f_mem with a "
                       "Clopper-Pearson interval, a digits FID and the energy distance at log-spaced steps; tau_gen "
                       "and tau_mem read off. Resumable: rerun with the same options and --out after an "
                       "interruption (kill -9 included).")
    add_config_options(p, TrainNetConfig)
    add_output_options(p, "train-net")
    p.set_defaults(func=run_train_net)


def run_train_net(args) -> int:
    from ..nets.config import TrainNetConfig

    config = config_from_args(TrainNetConfig, args)
    check_output_dir(args.out)
    try:
        from ..nets.train import train_net
    except ImportError as exc:
        raise InvalidParameterError(f"train-net needs PyTorch ({exc.name} is not installed): pip install "
                                    "'rfdm[nets]'.") from None
    try:
        result = train_net(config, out=args.out)
    except RuntimeError as exc:  # PyTorch reports a failed allocation as a RuntimeError
        if "alloc" in str(exc).lower() or "memory" in str(exc).lower():
            raise MemoryError from None
        raise
    paths = {"result": str(Path(args.out) / "result.json"), "figure": str(Path(args.out) / "train_net.png")}
    from ..nets.plot import plot_training
    from ..results import render

    render(plot_training, result, paths["figure"])
    emit(args, result, paths)
    return 0
