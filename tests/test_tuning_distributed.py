"""Distributed search on loopback: a chief and two workers, one worker killed mid-trial."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import child_env, child_job, write_job

from tuning.job import read_heartbeat
from tuning.launcher import free_port

MAX_TRIALS = 6


def job(out_dir, port):
    return child_job(out_dir, name="distributed", strategy="random", max_trials=MAX_TRIALS,
                     epochs=8, units_step=1, search={"max_retries_per_trial": 1},
                     retrain=True,
                     distributed={"ip": "127.0.0.1", "port": port, "worker_timeout": 8})


def ongoing(out):
    try:
        return json.loads((out / "search" / "oracle.json").read_text())["ongoing_trials"]
    except (OSError, ValueError, KeyError):
        return {}


@pytest.mark.slow
def test_chief_and_two_workers_survive_a_killed_worker(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "job.toml"
    write_job(config, job(out, free_port()))
    launcher = subprocess.Popen(
        [sys.executable, "-m", "zoo.cli", "tune", str(config), "--workers", "2"],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        killed = None
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and launcher.poll() is None:
            trials = ongoing(out)
            if "tuner1" in trials and "tuner0" in trials:
                beat = read_heartbeat(out, "tuner1")
                if beat:
                    os.kill(beat["pid"], signal.SIGKILL)  # mid-trial
                    killed = trials["tuner1"]
                    break
            time.sleep(0.1)
        assert killed is not None, "never saw both workers running trials"
        output, _ = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert launcher.returncode == 0, output
    assert "worker tuner1 exited" in output  # the launcher saw it die
    assert "their trials go to other workers" in output  # the chief handed its trial on
    trials = [json.loads(p.read_text()) for p in (out / "search").glob("trial_*/trial.json")]
    assert len(trials) == MAX_TRIALS
    assert all(t["status"] == "COMPLETED" for t in trials), [t["status"] for t in trials]
    best = json.loads((out / "best.json").read_text())
    assert best["completed"] == MAX_TRIALS
    assert (out / "best_model.keras").exists()
    assert read_heartbeat(out, "tuner0") is not None


CV_TRIALS = 4


def cv_job(out_dir, port):
    """A cross-validated job: 2 folds of 2 epochs; a fold cache shared by the workers."""
    raw = job(out_dir, port)
    raw["search"]["max_trials"] = CV_TRIALS
    raw["objective"]["metric"] = "val_accuracy"
    raw["cv"] = {"folds": 2, "epochs": 2}
    return raw


@pytest.mark.slow
def test_cross_validated_search_with_a_chief_and_two_workers(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "job.toml"
    write_job(config, cv_job(out, free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "tune", str(config), "--workers", "2"],
        env=child_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = [json.loads(p.read_text()) for p in (out / "search").glob("trial_*/trial.json")]
    assert len(trials) == CV_TRIALS
    assert all(t["status"] == "COMPLETED" for t in trials), [t["status"] for t in trials]
    for trial in trials:  # every trial is the mean of its two held-out folds
        metrics = trial["metrics"]["metrics"]
        folds = [metrics[f"cv_fold_{i}"]["observations"][0]["value"][0] for i in range(2)]
        score = metrics["val_accuracy"]["observations"][0]["value"][0]
        assert score == pytest.approx(sum(folds) / 2)
    best = json.loads((out / "best.json").read_text())
    assert best["default_cv"]["trial_id"] == "0" and len(best["default_cv"]["folds"]) == 2
    # the workers shared one fold cache: each trial's folds were trained once
    cache = json.loads((out / "cv_cache.json").read_text())
    assert len(cache) == 2 * CV_TRIALS
    assert (out / "best_model.keras").exists()
