"""The processes a bench run measures: the packager as a real `packager serve`, and nginx.

Both run as their own processes on loopback ports, so the load generator, the packager and the
baseline never share an interpreter, and the packager's RSS is read from /proc like any service.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{url}: process exited ({proc.returncode}):\n{log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-2000:]}")


def memory_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


@dataclass
class Packager:
    """`python -m packager serve` with its own data dir, DVR length and memory budget.

    Ingest is locked with a random key, as a deployment's is: every push the bench makes
    carries it (bench/feed.py), so the figures include checking it. It goes in by environment,
    not argv, where any user of the machine could read it.
    """

    workdir: Path
    dvr_duration: float
    memory_budget: int
    log_level: str = "warning"  # info turns on the JSON access log (one line per request)
    port: int = field(default_factory=free_port)
    ingest_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    extra: tuple[str, ...] = ()  # more `serve` flags (--store, --workers)
    tree: Path = REPO  # the checkout whose package runs (another commit's, for a baseline)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Packager:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "packager.log"
        env = {**os.environ, "PACKAGER_API_KEYS": API_KEY, "PACKAGER_INGEST_KEY": self.ingest_key}
        if self.tree != REPO:
            env["PYTHONPATH"] = str(self.tree)
        cmd = [
            sys.executable,
            "-m",
            "packager",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dvr-duration",
            str(self.dvr_duration),
            "--memory-budget",
            str(self.memory_budget),
            "--data-dir",
            str(self.workdir / "data"),
            "--log-level",
            self.log_level,
            *self.extra,
        ]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=self.tree, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(self.base + "/healthz", 30, self.proc, log)
        self.check_ingest_locked()
        return self

    def check_ingest_locked(self) -> None:
        """A push without the key must be refused: else the key never reached the server, and
        the bench would measure open ingest while it believes it measures authenticated."""
        probe = urllib.request.Request(
            self.base + "/ingest/bench-probe/r/index.m3u8", data=b"", method="PUT"
        )
        try:
            with urllib.request.urlopen(probe, timeout=5) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        if status != 401:
            raise RuntimeError(f"ingest without the key answered {status}, not 401")

    def memory(self) -> dict[str, int]:
        return memory_of(self.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used (/proc/PID/stat, clock ticks)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # run_app stops at once on SIGINT
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def served_package() -> Path:
    """The packager package `Packager.start` really runs: an editable install may point at
    another checkout, and the figures must be this tree's. (The cwd it starts in comes first
    on `python -m`'s path, so it is REPO's unless something is badly wrong.)"""
    done = subprocess.run(
        [sys.executable, "-c", "import packager; print(packager.__file__)"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(done.stdout.strip()).parent


def nginx_binary() -> str | None:
    # Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


@dataclass
class Nginx:
    """Debian's nginx serving `root` as static files: the baseline for the same bytes."""

    binary: str
    root: Path
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    workers: str = "auto"  # worker_processes

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        # As root the workers would drop to `nobody`, who cannot read a 0700 temp dir.
        user = "user root;\n" if os.geteuid() == 0 else ""
        w = self.workdir
        temp = "\n".join(
            f"    {kind}_temp_path {w / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"""{user}daemon off;
worker_processes {self.workers};
pid {w / "nginx.pid"};
error_log {w / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    types {{ application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; video/mp4 mp4; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
{temp}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
    }}
}}
"""

    def start(self) -> Nginx:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(self.config())
        log = self.workdir / "nginx.out"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "-p",
                    str(self.workdir),
                    "-c",
                    str(conf),
                    "-e",
                    str(self.workdir / "error.log"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_for(self.base + "/", 10, self.proc, log)
        return self

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def version_of(cmd: list[str]) -> str | None:
    try:
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else None
