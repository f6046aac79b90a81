"""Executors: a serial loop or a local process pool, submitit's LocalExecutor, and SLURM through submitit;
all run :func:`rfdm.sweep.store.run_point`."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .. import __version__
from ..backend import check_device_name, resolve_device
from ..errors import InvalidParameterError, RfdmError
from ..results import write_json
from ..progress import messages, progress
from .spec import EXECUTORS, Sweep
from .store import (POINT_FORMAT, _clean_temporaries, _Lock, _write_manifest, point_paths, read_point, run_point,
                    sweep_status)


class MissingExtraError(InvalidParameterError):
    """An optional dependency (xarray, submitit) is not installed; the message says which extra to install."""


#: kinds whose points use PyTorch: the local executor runs them serially
SERIAL_KINDS = ("train-net",)


#: more worker processes than this is a typo, not a machine (`rfdm sweep run`, `rfdm figure --workers`)
MAX_WORKERS = 4096


def run_sweep(sweep: Sweep, executor: str | None = None, workers: int | None = None, quiet: bool = False,
              wait: bool = True, device: str | None = None) -> dict:
    """Compute every point of ``sweep`` not already done (failed points are retried) with the executor
    (``local``: serial when workers = 1, else a process pool; ``submitit-local``; ``slurm``), printing
    progress to stderr.  Holds an exclusive lock on OUT/.lock meanwhile and first removes the temporary files
    of writes a kill interrupted.  Returns {total, already_done, computed, failed: [{name, error, message}],
    submitted, out}; ``wait=False`` (slurm) returns once the job array is submitted."""
    executor = executor or sweep.executor
    workers = workers or sweep.workers
    if executor not in EXECUTORS:
        raise InvalidParameterError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}.")
    if workers < 1:
        raise InvalidParameterError(f"workers must be a positive integer, got {workers}.")
    if executor == "local" and workers > 1 and sweep.kind in SERIAL_KINDS:
        workers = 1  # a pool forked from a process whose PyTorch threads are running can deadlock
        messages("sweep", quiet)(f"{sweep.kind} points run one at a time in the local executor (PyTorch in a "
                                 "forked pool can deadlock); use submitit-local or slurm to run them in parallel")
    device = check_device_name(device or sweep.device)
    if executor != "slurm":  # on SLURM the device is resolved on the nodes (a failure marks the points failed)
        resolve_device(device)
    ex = None if executor == "local" else _submitit_executor(sweep, executor)  # before anything is written
    log = messages("sweep", quiet)
    sweep.points_dir.mkdir(parents=True, exist_ok=True)
    lock = _Lock(sweep.out)
    try:
        _clean_temporaries(sweep.out)
        _write_manifest(sweep)
        status = sweep_status(sweep)
        done_names = set(status["done"])
        todo = [p for p in sweep.points if p.name not in done_names]
        total, already = len(sweep.points), len(done_names)
        summary = {"total": total, "already_done": already, "computed": 0, "failed": [], "submitted": 0,
                   "out": str(sweep.out)}
        if not todo:
            log(f"all {total} points already done in {sweep.out}")
            return summary
        log(f"{total} points: {already} already done, {len(todo)} to compute ({executor}, "
            f"{workers} worker{'s' if workers > 1 else ''}) into {sweep.out}")
        counter = {"done": already}
        bar = progress(total=total, initial=already, desc="rfdm sweep", unit="point", disable_quiet=quiet)

        def report(res):
            bar.update(1)
            if res["status"] == "failed":
                summary["failed"].append({"name": res["name"], "error": res.get("error", ""),
                                          "message": res["message"]})
            else:
                summary["computed"] += res["status"] == "done"
                counter["done"] += 1
            state = "FAILED, " + res["message"] if res["status"] == "failed" else f"{res['seconds']:.2f} s"
            log(f"{counter['done']}/{total} points done ({res['name']}: {state})")

        configs = [dict(p.config(sweep.kind, sweep.seed, device), reuse_older=sweep.reuse_older) for p in todo]
        if executor == "local":
            try:
                _run_local(configs, sweep.out, workers, lock.fd, report)
            finally:
                bar.close()
        else:
            try:
                submitted = _run_submitit(ex, configs, sweep, executor, workers, report, wait, log)
            finally:
                bar.close()
            summary["submitted"] = submitted
        return summary
    finally:
        lock.release()


def _run_local(configs, out, workers, lock_fd, report):
    workers = min(workers, len(configs))
    if workers == 1:
        for cfg in configs:
            report(run_point(cfg, out))
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(lock_fd,))
    try:
        futures = [pool.submit(run_point, cfg, out) for cfg in configs]
        for fut in as_completed(futures):
            report(fut.result())
    except BrokenProcessPool:
        raise RfdmError("a worker process died (out of memory?); finished points are kept, rerun to resume.") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_init(lock_fd):
    """Pool worker: leave SIGINT to the parent, drop the inherited copy of the lock descriptor, and exit when
    the parent dies (a worker of a killed run would otherwise wait for work forever)."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if lock_fd is not None:
        try:
            os.close(lock_fd)
        except OSError:
            pass
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(ppid: int, period: float = 0.5) -> None:
    while True:
        time.sleep(period)
        if os.getppid() != ppid:
            os._exit(1)  # a point being computed is abandoned; nothing is half-written


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise MissingExtraError("the submitit executors need submitit: pip install 'rfdm[slurm]'.") from None
    return submitit


def _submitit_executor(sweep: Sweep, executor: str):
    """submitit's LocalExecutor (``submitit-local``) or AutoExecutor on SLURM (``slurm``, one job array with
    the [slurm] settings), logging to OUT/submitit; built before anything is written."""
    submitit = _import_submitit()
    folder = sweep.out / "submitit"
    s = sweep.slurm
    if executor == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=s["timeout_min"])
        return ex
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as exc:  # e.g. no srun: not on a SLURM cluster
        msg = " ".join(str(exc).split()).rstrip(".")
        raise InvalidParameterError(f"--executor slurm needs a SLURM cluster ({msg}); use local or "
                                    f"submitit-local.") from None
    params = {"timeout_min": s["timeout_min"], "cpus_per_task": s["cpus_per_task"], "mem_gb": s["mem_gb"],
              "name": f"rfdm-sweep-{Path(sweep.source).stem}", "slurm_array_parallelism": s["array_parallelism"]}
    for key in ("partition", "account", "qos"):
        if s[key]:
            params[f"slurm_{key}"] = s[key]
    ex.update_parameters(**params)
    return ex


def _run_submitit(ex, configs, sweep, executor, workers, report, wait, log) -> int:
    """Dispatch run_point through a submitit executor: on SLURM one job array (at most [slurm]
    array_parallelism jobs at once), waited for unless ``wait`` is false; with LocalExecutor at most
    ``workers`` jobs at once.  Returns the number of jobs submitted."""
    if executor == "slurm":
        jobs = ex.map_array(run_point, configs, [sweep.out] * len(configs))
        log(f"submitted {len(jobs)} SLURM jobs (array {str(jobs[0].job_id).split('_')[0]}); logs in "
            f"{sweep.out / 'submitit'}")
        if wait:
            _wait_jobs(list(zip(jobs, configs)), report, sweep.out)
        return len(jobs)
    queue, running, submitted = list(configs), [], 0
    while queue or running:
        while queue and len(running) < workers:
            cfg = queue.pop(0)
            running.append((ex.submit(run_point, cfg, sweep.out), cfg))
            submitted += 1
        running = _wait_jobs(running, report, sweep.out, first_only=True)
    return submitted


def _wait_jobs(running, report, out, first_only: bool = False):
    """Poll submitit jobs; report each finished one (a job that died without writing its point, e.g. killed at
    its time limit, is recorded as a failed point).  With first_only, return the jobs still running as soon as
    one has finished."""
    while running:
        still, finished = [], 0
        for job, cfg in running:
            if not job.done():
                still.append((job, cfg))
                continue
            finished += 1
            try:
                res = job.result()
            except Exception as exc:  # the job died (timeout, node failure, ...): record it
                message = " ".join(str(exc).split())[:500] or type(exc).__name__
                done_path, failed_path = point_paths(out, cfg["name"])
                if read_point(done_path, cfg["key"], cfg.get("identity"), cfg.get("reuse_older", False)) is None:
                    write_json(failed_path, {"format": POINT_FORMAT, "status": "failed", "key": cfg["key"],
                                             "name": cfg["name"], "kind": cfg["kind"], "params": cfg["params"],
                                             "seed": cfg["seed"], "error": type(exc).__name__, "message": message,
                                             "version": __version__})
                res = {"name": cfg["name"], "key": cfg["key"], "status": "failed", "seconds": 0.0,
                       "error": type(exc).__name__, "message": f"job failed: {type(exc).__name__}: {message}"}
            report(res)
        running = still
        if first_only and finished:
            return running
        if running:
            time.sleep(0.1)
    return running
