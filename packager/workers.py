"""`packager serve --workers N`: N processes serving one port, sharing a Redis store.

Each worker binds the port itself with SO_REUSEPORT, so the kernel spreads connections over
them evenly (one listening socket shared by all would wake them all and feed the busiest).
The parent only supervises: it restarts a worker that dies, and stops them all on SIGTERM
or SIGINT. A worker must never outlive its parent and keep serving the port alone: each asks
the kernel for SIGTERM when its parent dies (prctl PR_SET_PDEATHSIG), and also watches its
parent's pid, which covers systems without prctl and a parent that died before the call.

What must happen once (a clip's completion, expiry, VOD save) is decided in the store: timers
are leased there, so any worker may run them. Only worker 0 replays `--demo`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType

from packager.config import Config

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
RESTART_PAUSE = 1.0  # seconds between restarts of a worker that keeps dying
EARLY_DEATH = 5.0  # a worker dead this soon after its start has a problem a restart won't fix
STOP_TIMEOUT = 40.0  # each worker's graceful shutdown (30 s), plus a margin


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when `parent` dies (Linux), and a watcher thread for the rest."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_TIMEOUT)
        os._exit(1)  # graceful shutdown hung: nothing may keep the port

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


Serve = Callable[[Config, bool], None]


def _worker(config: Config, parent: int, serve: Serve) -> None:
    die_with_parent(parent)
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s w{config.worker} %(name)s %(message)s",
    )
    serve(config, True)  # reuse_port: every worker binds the same port


def check_port(host: str, port: int) -> None:
    """Fail in the parent, with a plain message, if the port is taken by a process that did
    not set SO_REUSEPORT (each worker would otherwise die on its bind, one after another)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))


def run(config: Config, serve: Serve) -> int:
    """Start `config.workers` workers, each running `serve` (packager.cli's, handed down so
    that this module does not import the command line above it), and keep them running until
    told to stop."""
    try:
        check_port(config.host, config.port)
    except OSError as exc:
        print(f"packager: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    context = multiprocessing.get_context("spawn")
    me = os.getpid()
    stopping = threading.Event()

    def start(index: int) -> tuple[BaseProcess, float]:
        worker_config = dataclasses.replace(config, worker=index)
        proc = context.Process(
            target=_worker, args=(worker_config, me, serve), name=f"packager-worker-{index}"
        )
        proc.start()
        return proc, time.monotonic()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = {i: start(i) for i in range(config.workers)}
    code = 0
    try:
        while not stopping.wait(0.5):
            for index, (proc, started) in list(workers.items()):
                if proc.is_alive():
                    continue
                log.error("worker %d (pid %s) exited with %s", index, proc.pid, proc.exitcode)
                if time.monotonic() - started < EARLY_DEATH:
                    print(
                        f"packager: worker {index} died at start (exit {proc.exitcode})",
                        file=sys.stderr,
                    )
                    code = 1
                    stopping.set()
                    break
                time.sleep(RESTART_PAUSE)
                workers[index] = start(index)
    finally:
        for proc, _ in workers.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc, _ in workers.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
    return code
