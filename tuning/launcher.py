"""Starts a distributed tuning job on one machine: a chief and N workers.

`launch(config_path, workers=2)` runs `gru-zoo tune CONFIG --chief` and
`gru-zoo tune CONFIG --worker --tuner-id tunerI` as child processes that talk over
keras-tuner's gRPC oracle service on `[distributed] ip:port` (loopback by default).
It returns the chief's exit code once the chief has finished the search and written
the results. A worker that dies does not stop the search: the chief hands its trial
to another worker (see `tuning.job`). On several machines, run the same two
commands on each machine instead, with `[distributed] ip` set to the chief's address.
"""

import socket
import subprocess
import sys
import time

from zoo.checks import check, is_positive_int


def free_port(ip="127.0.0.1"):
    """A TCP port that is free on `ip` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def tune_command(config_path, *args):
    """The command line of `gru-zoo tune` run with this interpreter."""
    return [sys.executable, "-m", "zoo.cli", "tune", str(config_path), *map(str, args)]


def launch(config_path, workers=2, *, extra_args=(), log_dir=None, poll_seconds=1.0,
           grace_seconds=30.0):
    """Runs a chief and `workers` workers; returns the chief's exit code.

    Args:
        config_path: path of the TOML job config.
        workers: int, number of worker processes.
        extra_args: more `gru-zoo tune` arguments for every process (e.g.
            `["--port", "8471"]`).
        log_dir: a directory for `chief.log` and `tunerI.log`, or `None` to inherit
            this process's output.
        poll_seconds: how often the processes are checked.
        grace_seconds: how long workers may take to exit after the chief.
    """
    check("workers", workers, is_positive_int(workers), "a positive int")
    workers = int(workers)
    logs = []

    def start(name, args):
        if log_dir is None:
            return subprocess.Popen(tune_command(config_path, *args, *extra_args))
        from pathlib import Path

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log = open(Path(log_dir) / f"{name}.log", "w")
        logs.append(log)
        return subprocess.Popen(tune_command(config_path, *args, *extra_args),
                                stdout=log, stderr=subprocess.STDOUT)

    chief = start("chief", ["--chief"])
    procs = {f"tuner{i}": start(f"tuner{i}", ["--worker", "--tuner-id", f"tuner{i}"])
             for i in range(workers)}
    reported = set()
    try:
        while chief.poll() is None:
            for name, proc in procs.items():
                if proc.poll() is not None and name not in reported:
                    reported.add(name)
                    if proc.returncode != 0:
                        print(f"gru-zoo tune: worker {name} exited with code {proc.returncode}; "
                              "the chief hands its trial to another worker", flush=True)
            time.sleep(poll_seconds)
        deadline = time.monotonic() + grace_seconds
        for proc in procs.values():
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if proc.poll() is None:
                proc.terminate()
        return chief.returncode
    finally:
        for proc in [chief, *procs.values()]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
