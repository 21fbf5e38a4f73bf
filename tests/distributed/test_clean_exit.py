"""A multi-rank CPU (gloo) job exits with 0, and leaves no shared memory behind.

A gloo worker thread that drops a finished collective after the main thread reached
interpreter shutdown aborts the process (torch 2.13): the deepspeed launcher then reports a
failed job after a complete run. :func:`seesaw_ds.distributed.register_clean_exit` (called
by the engine hook and Megatron's parameter scheduler) prevents it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import seesaw_ds.distributed as distributed

WORKER = Path(__file__).with_name("exit_race_worker.py")
RUNS = 5


def run_job(mode: str) -> list:
    """Both ranks' exit codes of one 2-rank job."""
    port = distributed.free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                   RANK=str(rank), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(WORKER), mode], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    return [(proc.wait(timeout=120), proc.stderr.read()[-500:]) for proc in procs]


def test_a_guarded_gloo_job_exits_cleanly_every_time():
    # unguarded, half or more of these jobs abort on this machine: 5 clean jobs in a row
    # without the guard would happen about 3% of the time
    for _ in range(RUNS):
        for code, stderr in run_job("guard"):
            assert code == 0, stderr


def test_no_guard_without_a_process_group(monkeypatch):
    monkeypatch.setattr(distributed, "_clean_exit_registered", False)  # an earlier test's
    assert distributed.register_clean_exit() is False


def test_the_exit_handler_removes_this_ranks_shm_buffer(tmp_path, monkeypatch):
    buffer = tmp_path / "deepspeed_allreduce_buffer_x"
    buffer.write_bytes(b"\0" * 16)
    monkeypatch.setattr(distributed, "cpu_shm_buffer_path", lambda: str(buffer))
    monkeypatch.setattr(distributed, "GLOO_EXIT_GRACE_SECONDS", 0.0)
    distributed._exit_cleanly()
    assert not buffer.exists()
