"""Snakemake's directory lock after a crash: tell a stale lock from a running workflow.

A run killed with SIGKILL (or a power loss) leaves ``.snakemake/locks/*.lock`` behind,
and every later run stops with "Directory cannot be locked". The lock is stale when no
live Snakemake process works on that directory (its working directory or
``--directory``); then ``snakemake --unlock`` — removing those lock files — is safe,
and ``rerun-incomplete`` (the default profile) redoes the job that was cut off.

``python -m neurodissect.locks [--clear] [DIR]`` (``make demo`` runs it with
``--clear``): exit 0 when DIR can be locked (after clearing a stale lock with
``--clear``); exit 1 saying the exact command when a stale lock is left, or which
processes hold a live one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

LOCK_DIR = Path(".snakemake") / "locks"


def lock_files(workdir: str | Path) -> list[Path]:
    return sorted((Path(workdir) / LOCK_DIR).glob("*.lock"))


def _snakemake_directory(pid: str, argv: list[str]) -> Path | None:
    """The directory the Snakemake process ``pid`` works on, or None if it is no Snakemake."""
    if not any("snakemake" in Path(a).name or a == "snakemake" for a in argv[:3]):
        return None
    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    for i, arg in enumerate(argv):
        if arg in ("--directory", "-d") and i + 1 < len(argv):
            return (cwd / argv[i + 1]).resolve()
        if arg.startswith("--directory="):
            return (cwd / arg.split("=", 1)[1]).resolve()
    return cwd.resolve()


def live_snakemake_pids(workdir: str | Path) -> list[int] | None:
    """Pids of live Snakemake processes on ``workdir``; None where /proc is unavailable."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    target, pids = Path(workdir).resolve(), []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if _snakemake_directory(entry.name, argv) == target:
                pids.append(int(entry.name))
        except OSError:  # gone meanwhile, or another user's process
            continue
    return sorted(pids)


def lock_state(workdir: str | Path) -> tuple[str, list[int]]:
    """("free" | "live" | "stale" | "unknown", pids of live Snakemake processes)."""
    pids = live_snakemake_pids(workdir)
    if pids:
        return "live", pids
    if not lock_files(workdir):
        return "free", []
    return ("unknown", []) if pids is None else ("stale", [])


def clear_stale(workdir: str | Path) -> list[Path]:
    """Remove the lock files (what ``snakemake --unlock`` does); returns them."""
    files = lock_files(workdir)
    for path in files:
        path.unlink(missing_ok=True)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m neurodissect.locks", description=__doc__)
    p.add_argument("workdir", nargs="?", default=".")
    p.add_argument("--clear", action="store_true", help="remove a stale lock")
    args = p.parse_args(argv)
    state, pids = lock_state(args.workdir)
    where = Path(args.workdir).resolve()
    unlock = f"snakemake --directory {where} --unlock"
    if state == "free":
        return 0
    if state == "live":
        print(
            f"{where}: Snakemake is running here (pid {', '.join(map(str, pids))}); wait for "
            "it to finish or stop it, then rerun",
            file=sys.stderr,
        )
        return 1
    if state == "unknown":
        print(
            f"{where}: locked ({len(lock_files(where))} lock files) and this system cannot "
            f"list processes; if no Snakemake runs here, run: {unlock}",
            file=sys.stderr,
        )
        return 1
    if args.clear:
        cleared = clear_stale(where)
        print(
            f"{where}: cleared a stale Snakemake lock ({len(cleared)} files) left by a run "
            f"that was killed (no Snakemake runs here; same as `{unlock}`); the "
            "interrupted job reruns",
            file=sys.stderr,
        )
        return 0
    print(
        f"{where}: stale Snakemake lock left by a killed run (no Snakemake runs here); "
        f"run: {unlock}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
