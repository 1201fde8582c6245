"""`packager serve`: settings from flags, else `PACKAGER_<NAME>` variables, else defaults."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from packager.config import STORE_SCHEMES, Config, parse_size

DEMO_API_KEY = "demo"
SHUTDOWN_TIMEOUT = 30.0
LISTEN_BACKLOG = 1024  # --demo without keys: a documented key, the demo is for trying things


def _env(name: str) -> str | None:
    return os.environ.get(f"PACKAGER_{name.upper()}") or None


def _keys(text: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())


def _secret_file(data_dir: Path, name: str, shared: str | None = None) -> str:
    """No secret configured: make one, keep it in the data dir (0600), never print it.

    Made once, never per process: with a Redis store the value is first agreed in Redis
    (SET NX), so every host gets the same one even without a shared data dir; the file is
    that value's copy an operator can read."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    key = secrets.token_urlsafe(24)
    if shared is not None:
        from packager.store.redis import shared_secret

        key = shared_secret(shared, name, key)
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: theirs stands
        return path.read_text().strip() or key
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="packager", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")

    def opt(name: str, kind: Callable[[str], Any] = str, help: str = "", **kw: Any) -> None:
        env = _env(name.replace("-", "_"))
        default = kind(env) if env is not None else None
        serve.add_argument(f"--{name}", type=kind, default=default, help=help, **kw)

    opt("host", help="listen address (default 127.0.0.1)")
    opt("port", int, help="listen port (default 8080)")
    opt("api-keys", help="comma-separated management API keys (default: data/api_key)")
    opt("ingest-key", help="operator's push key for any stream (Authorization: Bearer)")
    opt("playback-secret", help="HMAC key for private clips' signed links (data/playback_secret)")
    opt("max-concurrent-remuxes", int, help="MP4 layouts built at once before 503 (4)")
    opt("dvr-duration", float, help="default DVR length of a new stream, seconds (3600)")
    opt("memory-budget", parse_size, help="bytes of media held in memory, e.g. 2G")
    opt("data-dir", Path, help="VOD files and the generated API key (./data)")
    opt("public-base-url", help="scheme://host[:port] used in links (default: request host)")
    opt("max-segment-bytes", parse_size, help="largest accepted ingest file (64M)")
    opt("completion-grace", float, help="seconds a growing clip waits for a stalled ingest (10)")
    opt("log-level", help="debug, info, warning (info)")
    opt("body-timeout", float, help="seconds an upload may stall before it is dropped (60)")
    opt(
        "keepalive-timeout",
        float,
        help="seconds an idle connection, or one still sending its headers, stays open (75)",
    )
    opt(
        "store",
        help="memory (default) or redis://host:6379/0, redis+cluster://host:port (shared by processes)",
    )
    opt("cache-size", parse_size, help="per-process cache of a Redis store's segments (256M)")
    opt("workers", int, help="processes serving the port (1); more than one needs --store redis")
    opt("demo-dir", Path, help="ladder replayed by --demo (fixtures/ladder)")
    opt(
        "event-loop",
        help="uvloop (default: more throughput) or asyncio (fairer tail latency)",
        choices=["uvloop", "asyncio"],
    )
    serve.add_argument(
        "--anonymous-ingest",
        action="store_true",
        default=(_env("anonymous_ingest") or "").lower() in ("1", "true", "yes"),
        help="take pushes without a key (and create streams on first push): trusted networks only",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        default=(_env("demo") or "").lower() in ("1", "true", "yes"),
        help="also replay the fixture ladder as the live stream 'demo'",
    )
    return parser


class SettingError(ValueError):
    """A setting that cannot work (told to the user as a usage error)."""


def config_from_args(args: argparse.Namespace) -> Config:
    given = {
        k: v
        for k, v in vars(args).items()
        if v is not None and k in Config.__dataclass_fields__ and k != "api_keys"
    }
    store = given.get("store", Config.store)
    if store != "memory" and not store.startswith(STORE_SCHEMES):
        raise SettingError(f"--store {store}: use memory, redis://host:6379/0 or redis+cluster://")
    if given.get("workers", 1) < 1:
        raise SettingError("--workers must be at least 1")
    if given.get("workers", 1) > 1 and store == "memory":
        raise SettingError(
            "--workers N > 1 needs a store the workers share: add --store redis://host:6379/0"
        )
    shared = store if store != "memory" else None
    data_dir = given.get("data_dir", Config.data_dir)
    if "playback_secret" not in given:
        given["playback_secret"] = _secret_file(data_dir, "playback_secret", shared)
    config = Config(**given)
    keys = _keys(args.api_keys)
    if not keys:
        keys = (
            (DEMO_API_KEY,) if config.demo else (_secret_file(config.data_dir, "api_key", shared),)
        )
    return Config(**{**given, "api_keys": keys})


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except SettingError as exc:
        parser.error(str(exc))
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if config.workers > 1:
        from packager import workers

        sys.exit(workers.run(config, serve))
    serve(config)


def raise_open_files_limit() -> int:
    """Lift the soft limit on open files to the hard one: each connection is a descriptor, and
    1,024 (a common soft default) let 2,000 half-sent requests starve /healthz."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, ValueError, OSError):  # pragma: no cover - not on every platform
        return -1


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_allocator() -> bool:
    """Make freed request bodies go back to the system at once. glibc serves blocks past its
    mmap threshold with their own mappings, returned on free; but the threshold rises after
    the first large free (up to 32 MiB), and from then on upload chunks came from the heap,
    which kept their pages: RSS stayed hundreds of MB up after uploads were abandoned. A fixed
    threshold (and heap trimming past 1 MiB free at the top) keeps RSS near what is held.
    Elsewhere than glibc, nothing to do."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        ok: bool = libc.mallopt(_M_MMAP_THRESHOLD, 64 * 1024) == 1
        return ok and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 20) == 1
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False


def serve(config: Config, reuse_port: bool = False) -> None:
    from aiohttp import web

    from packager.http.accesslog import JsonAccessLogger
    from packager.http.app import create_app

    if config.event_loop == "uvloop":
        try:
            import uvloop

            uvloop.install()
        except ImportError:  # pragma: no cover - uvloop is optional off Linux/macOS
            pass
    raise_open_files_limit()
    tune_allocator()
    app = create_app(config)
    base = config.public_base_url or f"http://{config.host}:{config.port}"
    print(f"packager listening on {base}", file=sys.stderr, flush=True)
    if config.demo and config.worker == 0:
        print(
            f"demo stream 'demo' is live; try:\n  curl -X POST -H 'Authorization: apikey "
            f"{DEMO_API_KEY}' -d '{{\"duration\": 10, \"start\": '$(($(date +%s)-15))'}}' "
            f"{base}/streams/demo/clip_recording",
            file=sys.stderr,
            flush=True,
        )
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        print=None,
        access_log=logging.getLogger("packager.access"),
        access_log_class=JsonAccessLogger,
        # SIGTERM: stop accepting, let in-flight downloads finish, then run cleanup (VOD writes).
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        # 128 (the default) dropped connections under 200 clients: SYN retries cost seconds.
        backlog=LISTEN_BACKLOG,
        keepalive_timeout=config.keepalive_timeout,
        reuse_port=reuse_port or None,
    )


if __name__ == "__main__":  # pragma: no cover
    main()
