"""Resume: a job killed (SIGKILL, Ctrl-C) mid-search, started again with the same command."""

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers import child_env, child_job, write_job

MAX_TRIALS = 4


def job(out_dir):
    return child_job(out_dir, name="resume", strategy="genetic", max_trials=MAX_TRIALS,
                     epochs=6, units_step=2, options={"population_size": 2}, retrain=False)


def trial_states(project):
    states = {}
    for path in project.glob("trial_*/trial.json"):
        try:
            trial = json.loads(path.read_text())
        except ValueError:  # being written
            continue
        states[trial["trial_id"]] = trial
    return states


def default_signals():
    # A shell's background jobs start with SIGINT ignored: give the job a real Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("kill_signal", [
    signal.SIGKILL,
    pytest.param(signal.SIGINT, marks=pytest.mark.slow),  # same saved state as SIGKILL
], ids=["SIGKILL", "SIGINT"])
def test_killed_mid_search_then_resume(tmp_path, kill_signal):
    out = tmp_path / "out"
    config = tmp_path / "job.toml"
    write_job(config, job(out))
    command = [sys.executable, "-m", "zoo.cli", "tune", str(config)]
    proc = subprocess.Popen(command, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=default_signals)
    project = out / "search"
    deadline = time.monotonic() + 300
    killed_during = None
    while time.monotonic() < deadline and proc.poll() is None:
        states = trial_states(project)
        done = [t for t, s in states.items() if s["status"] == "COMPLETED"]
        running = [t for t, s in states.items() if s["status"] == "RUNNING"]
        if done and running:
            proc.send_signal(kill_signal)
            proc.wait(timeout=60)  # Ctrl-C ends the job at once, like SIGKILL
            killed_during = running[0]
            break
        time.sleep(0.05)
    output = proc.stdout.read()
    assert killed_during is not None, f"the search ended before it could be killed:\n{output}"
    if kill_signal == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 128 + signal.SIGINT
        assert "interrupted" in output and "run the same command to resume" in output

    before = trial_states(project)
    completed = {t: s for t, s in before.items() if s["status"] == "COMPLETED"}
    checkpoints = {t: (project / f"trial_{t}" / "checkpoint.weights.h5").stat().st_mtime_ns
                   for t in completed}
    assert len(completed) < MAX_TRIALS

    # The same command again: it resumes.
    result = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    after = trial_states(project)
    assert len(after) == MAX_TRIALS
    assert all(s["status"] == "COMPLETED" for s in after.values()), (
        {t: s["status"] for t, s in after.items()}, result.stdout[-2000:])
    for trial_id, state in completed.items():
        # Never run again: same score, checkpoint untouched.
        assert after[trial_id]["score"] == state["score"]
        assert after[trial_id]["hyperparameters"] == state["hyperparameters"]
        path = project / f"trial_{trial_id}" / "checkpoint.weights.h5"
        assert path.stat().st_mtime_ns == checkpoints[trial_id]
    # The killed trial was run again with the hyperparameters it had.
    assert after[killed_during]["hyperparameters"]["values"] == \
        before[killed_during]["hyperparameters"]["values"]
    rows = (out / "trials.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + MAX_TRIALS
    assert f"{MAX_TRIALS}/{MAX_TRIALS} trials completed" in result.stdout

