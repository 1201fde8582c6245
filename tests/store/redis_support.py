"""Real Redis servers for the tests: Debian's `redis-server` started on free ports with no
persistence, and a three-master Redis Cluster built with `redis-cli --cluster create`. Never a
fake: the Lua scripts, TTLs and cluster slots are what is under test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)
REDIS_CLI = shutil.which("redis-cli")
MISSING = "redis-server is not installed (apt-get install redis-server)"


def free_port(bus: bool = False) -> int:
    """A free port; with `bus`, one whose cluster bus port (port + 10000) is free too."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisServer:
    """One `redis-server` process on 127.0.0.1, stopped with `stop()`."""

    def __init__(self, workdir: Path, *extra: str, port: int | None = None) -> None:
        if REDIS_SERVER is None:
            pytest.skip(MISSING)
        self.port = port or free_port(bus="--cluster-enabled" in extra)
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class LocalCluster:
    """Three masters, no replicas: every slot has one owner."""

    def __init__(self, workdir: Path) -> None:
        if REDIS_CLI is None:
            pytest.skip("redis-cli is not installed (apt-get install redis-server)")
        self.servers: list[RedisServer] = []
        try:
            for n in range(3):
                d = workdir / f"node{n}"
                self.servers.append(
                    RedisServer(
                        d,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(d / "nodes.conf"),
                    )
                )
            subprocess.run(
                [
                    REDIS_CLI,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{s.port}" for s in self.servers),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                timeout=60,
            )
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = [s.client().cluster("info") for s in self.servers]
            if all(i.get("cluster_state") == "ok" for i in infos):
                return
            time.sleep(0.1)
        raise RuntimeError("the local Redis Cluster did not become ready")

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.servers[0].port}"

    def stop(self) -> None:
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session; `make_store` flushes it before each test."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()
