"""`rfdm sweep` on a real one-node SLURM cluster (scripts/slurm/start.sh): the slurm executor through submitit,
one job of the array cancelled (scancel) and the worker of another killed with SIGKILL while they run, a rerun
that computes only what is missing, and `collect` giving bit-for-bit the numbers of a local-pool run of the
same sweep.

Marked `slurm` (not in the default selection): `python -m pytest -m slurm -rs`.  The cluster is used if
`sinfo` already answers (SLURM_CONF, else the folder of scripts/slurm/start.sh); otherwise this module starts
it (root only; it installs slurm-wlm, munge, slurmdbd and mariadb-server with apt-get when missing) and stops
it afterwards.  The test is skipped, with the reason, only when the cluster cannot be installed or started.
Everything goes through the command line in subprocesses (`python -m rfdm ...`), with one BLAS thread
everywhere: the BLAS thread count changes the last bits of the numbers (docs/sweeps.md, Seeds).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts" / "slurm"
STATE = Path(os.environ.get("RFDM_SLURM_DIR", "/tmp/rfdm-slurm"))

# An examples/sweep_gap.toml-style sweep: 6 points of a few seconds each (d = 96, p = 1152, n = 192 ... 384),
# long enough to catch a job of the array while it runs.  Two jobs at once (array_parallelism = 2).
CONFIG = """
[sweep]
kind = "dynamics"
out = "slurm-results"
executor = "slurm"
seed = 11

[fixed]
d = 96
psi_p = 12.0
t = 0.1
tau = [1.0, 100.0, 10000.0]

[grid]
psi_n = [2.0, 3.0, 4.0]
activation = ["tanh", "relu"]

[slurm]
timeout_min = 10
cpus_per_task = 1
mem_gb = 1.0
array_parallelism = 2
"""
N_POINTS = 6


def _cluster_env() -> dict:
    env = dict(os.environ)
    if "SLURM_CONF" not in env and (STATE / "etc" / "slurm.conf").is_file():
        env["SLURM_CONF"] = str(STATE / "etc" / "slurm.conf")
    return env


def _sinfo_idle(env) -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "idle" in out.stdout.split()


@pytest.fixture(scope="module")
def cluster():
    """The environment of a working SLURM cluster (SLURM_CONF set); starts one if none answers."""
    if os.environ.get("RFDM_SLURM_SKIP"):  # .ci/run tried scripts/slurm/start.sh already, and it failed
        print(f"\nSLURM cluster could not be started: {os.environ['RFDM_SLURM_SKIP']}", file=sys.stderr)
        pytest.skip(f"the SLURM cluster could not be installed or started: {os.environ['RFDM_SLURM_SKIP']}")
    env = _cluster_env()
    if _sinfo_idle(env):
        yield env
        return
    if os.geteuid() != 0:
        pytest.skip("no SLURM cluster answers and scripts/slurm/start.sh needs root to install and start one")
    t0 = time.monotonic()
    try:
        proc = subprocess.run([str(SCRIPTS / "start.sh")], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/slurm/start.sh did not finish within 15 minutes")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        print(f"\nSLURM cluster could not be started: {last}", file=sys.stderr)
        pytest.skip(f"the SLURM cluster could not be installed or started: {last}")
    print(f"\nstarted a one-node SLURM cluster in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    env = dict(os.environ, SLURM_CONF=str(STATE / "etc" / "slurm.conf"))
    try:
        yield env
    finally:
        subprocess.run([str(SCRIPTS / "stop.sh")], capture_output=True, timeout=120)


def _env(cluster_env) -> dict:
    return dict(cluster_env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(ROOT / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def _rfdm(args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "rfdm", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _running_tasks(env, array_id: str) -> list[str]:
    """Array task ids (e.g. '12_0') of the array that SLURM reports RUNNING."""
    out = subprocess.run(["squeue", "-h", "-r", "-j", array_id, "-o", "%i %T"], env=env, capture_output=True,
                         text=True, timeout=10).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] == ["RUNNING"]]


def _worker_pid(job_id: str, task_id: str) -> int | None:
    """The pid of the Python worker (submitit's `_submit`) of one array task, found by its environment."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0")
                           if b"=" in item)
        except OSError:
            continue
        if (b"submitit.core._submit" in cmdline and environ.get(b"SLURM_ARRAY_JOB_ID") == job_id.encode()
                and environ.get(b"SLURM_ARRAY_TASK_ID") == task_id.encode()):
            return int(proc.name)
    return None


def _final_state(env, task: str, timeout: float = 60.0) -> str:
    """SLURM's accounting state of one array task once it has left PENDING/RUNNING (e.g. 'CANCELLED by 0')."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        out = subprocess.run(["sacct", "-n", "-X", "-j", task, "-o", "State", "--parsable2"], env=env,
                             capture_output=True, text=True, timeout=30).stdout.split()
        state = " ".join(out)
        if out and out[0] not in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "SUSPENDED"):
            return state
        time.sleep(0.2)
    return state


def _done_points(out: Path) -> dict:
    folder = out / "points"
    return {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in folder.glob("*.json")
            if not f.name.endswith(".failed.json")} if folder.is_dir() else {}


def test_slurm_sweep_survives_scancel_and_kill_9_and_matches_the_local_pool(tmp_path, cluster):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("submitit")
    t_start = time.monotonic()
    env = _env(cluster)
    cfg = tmp_path / "sweep_slurm.toml"
    cfg.write_text(CONFIG)
    out = tmp_path / "slurm-results"

    # 1. the first run: wait until two tasks of the array run, cancel one, SIGKILL the worker of the other
    log = open(tmp_path / "run1.err", "w+")
    run1 = subprocess.Popen([sys.executable, "-m", "rfdm", "sweep", "run", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    cancelled = killed = None
    deadline = time.monotonic() + 300
    try:
        array_id = None
        while array_id is None and time.monotonic() < deadline and run1.poll() is None:
            log.seek(0)
            for line in log.read().splitlines():
                if "(array " in line:
                    array_id = line.split("(array ")[1].split(")")[0]
            time.sleep(0.1)
        assert array_id, "the run did not submit a job array:\n" + (tmp_path / "run1.err").read_text()
        # A task seen RUNNING may finish before the signal lands (the race that made CI flaky): each
        # intervention counts only if SLURM's accounting then records the task as not COMPLETED; otherwise
        # the next running task of the array is tried.
        tried: set[str] = set()
        while (cancelled is None or killed is None) and time.monotonic() < deadline and run1.poll() is None:
            for task in _running_tasks(env, array_id):
                job, index = task.split("_")
                if task in tried:
                    continue
                if cancelled is None:
                    tried.add(task)
                    subprocess.run(["scancel", task], env=env, check=True, timeout=10)
                    if _final_state(env, task).startswith("CANCELLED"):
                        cancelled = index
                elif killed is None:
                    pid = _worker_pid(job, index)
                    if pid is not None:
                        tried.add(task)
                        os.kill(pid, signal.SIGKILL)
                        if not _final_state(env, task).startswith("COMPLETED"):
                            killed = index
                break  # the list of running tasks is stale after an intervention
            time.sleep(0.05)
        assert cancelled is not None and killed is not None, "could not catch two running jobs of the array"
        rc1 = run1.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if run1.poll() is None:
            os.killpg(run1.pid, signal.SIGKILL)
            run1.wait()
    log.seek(0)
    err1 = log.read()
    log.close()
    assert rc1 != 0, "the run with a cancelled and a killed job claimed success:\n" + err1
    assert "Traceback" not in err1
    first = _done_points(out)
    assert len(first) == N_POINTS - 2, f"expected {N_POINTS - 2} points done after the first run:\n{err1}"
    failed = sorted((out / "points").glob("*.failed.json"))
    assert len(failed) == 2, "the cancelled and the killed job are recorded as failed points"

    # SLURM itself saw one job cancelled and one failed (accounting, as submitit reads it)
    states = subprocess.run(["sacct", "-n", "-X", "-j", array_id, "-o", "JobID,State", "--parsable2"], env=env,
                            capture_output=True, text=True, timeout=30).stdout
    by_task = dict(line.split("|")[:2] for line in states.splitlines() if line.strip())
    assert by_task[f"{array_id}_{cancelled}"].startswith("CANCELLED"), states
    assert by_task[f"{array_id}_{killed}"] in ("FAILED", "NODE_FAIL", "CANCELLED"), states
    assert sum(v == "COMPLETED" for v in by_task.values()) == N_POINTS - 2, states

    # 2. status counts them; the rerun computes exactly the two missing points, as a new array on SLURM
    status = _rfdm(["sweep", "status", str(cfg)], env)
    assert status.returncode == 0 and "Traceback" not in status.stderr
    assert "failed 2" in status.stdout, status.stdout
    run2 = _rfdm(["sweep", "run", str(cfg)], env)
    assert run2.returncode == 0, run2.stderr
    assert "submitted 2 SLURM jobs" in run2.stderr, run2.stderr
    second = _done_points(out)
    assert len(second) == N_POINTS
    assert {k: second[k] for k in first} == first, "points finished before the kill were recomputed"
    assert not list((out / "points").glob("*.failed.json")), "failed markers are removed on success"
    assert not [p for p in out.rglob("*.tmp")]

    # 3. the same sweep on the local process pool (same config file; only the executor and the folder differ)
    local = tmp_path / "local-results"
    run3 = _rfdm(["sweep", "run", str(cfg), "--executor", "local", "--workers", "2", "--out", str(local),
                  "--quiet"], env)
    assert run3.returncode == 0, run3.stderr
    for target in (str(cfg), str(local)):
        res = _rfdm(["sweep", "collect", target, "--strict", "--quiet"], env)
        assert res.returncode == 0, res.stderr
    with xr.open_dataset(out / "collected.nc", engine="scipy") as a, \
            xr.open_dataset(local / "collected.nc", engine="scipy") as b:
        a.load()
        b.load()
    assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) >= 12
    for name in a.data_vars:  # bit for bit: assert_array_equal treats NaN == NaN, nothing else is tolerated
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        assert a[name].values.tobytes() == b[name].values.tobytes(), name
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert not np.isnan(a.test_loss.values).any()
    assert (a.point_seed.values >= 0).all()
    print(f"\nSLURM sweep test: {time.monotonic() - t_start:.1f} s (cancelled task {cancelled}, killed task "
          f"{killed}, array {array_id})", file=sys.stderr)
