"""A real CDN for the tests: Debian's nginx with proxy_cache, on loopback, in front of the packager.

It runs deploy/nginx/packager-cache.conf.template, the file docker-compose.yml mounts, filled the
way the nginx image's entrypoint fills it (only the named `${...}`; nginx's own `$variables`
stay), and included from a throwaway nginx.conf that keeps every path in the test's folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tests.e2e.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SITE_TEMPLATE = REPO / "deploy" / "nginx" / "packager-cache.conf.template"


def nginx_binary() -> str | None:
    # Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    return found


def render_site(upstream: str, listen: str, cache_dir: Path) -> str:
    return Template(SITE_TEMPLATE.read_text()).safe_substitute(
        PACKAGER_UPSTREAM=upstream, NGINX_LISTEN=listen, NGINX_CACHE_DIR=str(cache_dir)
    )


def _main_conf(folder: Path, site: Path) -> str:
    # As root the workers would drop to `nobody`, who cannot write into pytest's 0700 tmp dirs.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {folder / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}daemon off;
worker_processes 1;
pid {folder / "nginx.pid"};
error_log {folder / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {folder / "access.log"};
{temp}
    include {site};
}}
"""


@dataclass
class Nginx:
    base: str
    process: subprocess.Popen[bytes]
    folder: Path

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def start_nginx(folder: Path, upstream: str) -> Nginx:
    """nginx on a free loopback port, caching `upstream` (host:port) into `folder`/cache."""
    binary = nginx_binary()
    assert binary is not None, "nginx is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    site = folder / "site.conf"
    site.write_text(render_site(upstream, f"127.0.0.1:{port}", folder / "cache"))
    conf = folder / "nginx.conf"
    conf.write_text(_main_conf(folder, site))
    check = subprocess.run(
        [binary, "-t", "-q", "-e", str(folder / "error.log"), "-p", str(folder), "-c", str(conf)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr.decode()
    process = subprocess.Popen(
        [binary, "-e", str(folder / "error.log"), "-p", str(folder), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=(folder / "stderr.log").open("wb"),
    )
    nginx = Nginx(f"http://127.0.0.1:{port}", process, folder)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {nginx.error_log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return nginx
        except OSError:
            time.sleep(0.05)
    nginx.stop()
    raise RuntimeError(f"nginx did not start: {nginx.error_log()}")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def cache(self) -> str | None:
        return self.headers.get("x-cache-status")


def fetch(
    url: str, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> Reply:
    """One request, any status; header names lower-cased."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())
