"""The scale-out settings: a Redis store, workers that need it, secrets made once for all."""

from __future__ import annotations

from pathlib import Path

import pytest

from packager.cli import SettingError, build_parser, config_from_args
from packager.config import Config
from packager.service.compose import build_library, build_store
from packager.store.memory import MemoryStore
from packager.store.redis import RedisStore, parse_url
from packager.store.shared_videos import SharedVideoLibrary
from tests.store.redis_support import RedisServer


def _config(argv: list[str]) -> Config:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_the_store_is_memory_unless_a_redis_url_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACKAGER_API_KEYS", "k")
    config = _config(["--data-dir", str(tmp_path)])
    assert (config.store, config.workers) == ("memory", 1)
    assert isinstance(build_store(config, lambda: 0.0), MemoryStore)
    monkeypatch.setenv("PACKAGER_STORE", "redis://127.0.0.1:1/0?prefix=other")
    config = _config(["--data-dir", str(tmp_path), "--cache-size", "64M"])
    store = build_store(config, lambda: 0.0)
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.cache.capacity) == ("other", 64 << 20)
    assert parse_url("redis+cluster://h:7000?prefix=x") == ("redis://h:7000", True, "x")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "2"], "needs a store the workers share"),
        (["--workers", "0"], "at least 1"),
        (["--store", "postgres://x"], "use memory, redis://"),
    ],
)
def test_settings_that_cannot_work_are_refused_plainly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], message: str
) -> None:
    monkeypatch.setenv("PACKAGER_API_KEYS", "k")
    monkeypatch.delenv("PACKAGER_STORE", raising=False)
    with pytest.raises(SettingError, match=message):
        _config(["--data-dir", str(tmp_path), *argv])


def test_generated_secrets_are_agreed_once_in_redis_for_every_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    with redis_server.client() as admin:
        admin.flushall()
    monkeypatch.delenv("PACKAGER_API_KEYS", raising=False)
    monkeypatch.delenv("PACKAGER_PLAYBACK_SECRET", raising=False)
    store = ["--store", redis_server.url]
    host_a = _config(["--data-dir", str(tmp_path / "a"), *store])
    host_b = _config(["--data-dir", str(tmp_path / "b"), *store])  # its own data dir
    assert host_a.api_keys == host_b.api_keys and len(host_a.api_keys[0]) >= 32
    assert host_a.playback_secret == host_b.playback_secret
    assert (tmp_path / "b" / "api_key").read_text().strip() == host_a.api_keys[0]
    assert isinstance(build_library(host_a), SharedVideoLibrary)
