from __future__ import annotations

import stat
from pathlib import Path

import pytest

from packager.cli import build_parser, config_from_args
from packager.config import Config, parse_size


def _config(argv: list[str]) -> Config:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_flags_and_environment_set_every_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PACKAGER_PORT", "9000")
    monkeypatch.setenv("PACKAGER_API_KEYS", "a, b")
    monkeypatch.setenv("PACKAGER_MEMORY_BUDGET", "512M")
    config = _config(["--data-dir", str(tmp_path), "--dvr-duration", "600", "--host", "0.0.0.0"])
    assert (config.port, config.host, config.dvr_duration) == (9000, "0.0.0.0", 600)
    assert config.api_keys == ("a", "b")
    assert config.memory_budget == 512 << 20
    flag_wins = _config(["--data-dir", str(tmp_path), "--port", "9100"])
    assert flag_wins.port == 9100


def test_without_keys_a_private_key_file_is_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PACKAGER_API_KEYS", raising=False)
    first = _config(["--data-dir", str(tmp_path)])
    key_file = tmp_path / "api_key"
    assert first.api_keys == (key_file.read_text().strip(),)
    assert len(first.api_keys[0]) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert _config(["--data-dir", str(tmp_path)]).api_keys == first.api_keys
    assert first.playback_secret == (tmp_path / "playback_secret").read_text().strip()
    assert _config(["--data-dir", str(tmp_path), "--demo"]).api_keys == ("demo",)


@pytest.mark.parametrize(
    "text, size", [("100", 100), ("2k", 2048), ("512M", 512 << 20), ("1.5GiB", 3 << 29)]
)
def test_sizes_read_like_people_write_them(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
