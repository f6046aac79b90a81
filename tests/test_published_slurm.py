"""`rfdm figure ID --executor slurm` on the one-node SLURM cluster of tests/test_slurm.py (marker `slurm`, not in
the default selection: `python -m pytest -m slurm -rs`): the points of a published figure run as one job array
through submitit and the figure's numbers equal those of the serial run, bit for bit (one BLAS thread in both;
docs/sweeps.md, Seeds)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from test_slurm import _env, cluster  # noqa: F401  (the cluster fixture: used if running, started if root)

pytestmark = pytest.mark.slurm


def _figure(args, env):
    return subprocess.run([sys.executable, "-m", "rfdm", "figure", "B25-SM-fig13", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def test_figure_points_as_a_slurm_job_array_match_the_serial_run(tmp_path, cluster):  # noqa: F811
    pytest.importorskip("submitit")
    env = _env(cluster)
    on_slurm = _figure(["--executor", "slurm", "--slurm", "mem_gb=1", "--slurm", "timeout_min=10",
                        "--out", str(tmp_path / "slurm")], env)
    assert on_slurm.returncode == 0, on_slurm.stderr
    assert "submitted 15 SLURM jobs" in on_slurm.stderr
    folder = tmp_path / "slurm" / "B25-SM-fig13"
    assert len(list((folder / "points").glob("*.json"))) == 15 and (folder / "submitit").is_dir()
    serial = _figure(["--out", str(tmp_path / "serial")], env)
    assert serial.returncode == 0, serial.stderr
    a, b = (json.loads((tmp_path / o / "B25-SM-fig13" / "B25-SM-fig13.json").read_text()) for o in ("slurm", "serial"))
    for entry in (a, b):
        entry.pop("runtime_s"), entry.pop("cpu_s")
    assert a == b
