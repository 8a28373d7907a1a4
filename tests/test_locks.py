"""Stale Snakemake locks: a real Snakemake killed with SIGKILL mid-job leaves its lock;
the lock is told apart from a live run, cleared, and the rerun finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from neurodissect.locks import lock_files, lock_state, main

SNAKEFILE = """
rule all:
    input: "done.txt"

rule slow:
    output: "done.txt"
    shell: "sleep $(cat delay.txt); echo ok > {output}"
"""


def _snakemake(workdir, *args):
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--cores",
        "1",
        "--directory",
        str(workdir),
        "--snakefile",
        str(workdir / "Snakefile"),
        *args,
    ]


def test_killed_run_leaves_a_stale_lock_that_is_cleared_and_the_rerun_finishes(tmp_path, capsys):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "delay.txt").write_text("60")
    assert lock_state(tmp_path) == ("free", []) and main([str(tmp_path)]) == 0
    # started elsewhere: the process is found by its --directory, not its cwd
    proc = subprocess.Popen(
        _snakemake(tmp_path),
        cwd="/",
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not lock_files(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lock_files(tmp_path), "snakemake never locked its directory"
        state, pids = lock_state(tmp_path)
        assert state == "live" and proc.pid in pids
        assert main(["--clear", str(tmp_path)]) == 1 and lock_files(tmp_path)  # a live lock stays
        assert f"pid {proc.pid}" in capsys.readouterr().err
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole session: snakemake and its job
        proc.wait()
    assert lock_files(tmp_path) and lock_state(tmp_path) == ("stale", [])
    # as the next run sees it
    locked = subprocess.run(_snakemake(tmp_path), capture_output=True, text=True)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    assert main([str(tmp_path)]) == 1
    assert f"run: snakemake --directory {tmp_path.resolve()} --unlock" in capsys.readouterr().err
    assert main(["--clear", str(tmp_path)]) == 0 and not lock_files(tmp_path)
    (tmp_path / "delay.txt").write_text("0")
    rerun = subprocess.run(
        _snakemake(tmp_path, "--rerun-incomplete"), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (tmp_path / "done.txt").read_text() == "ok\n"
