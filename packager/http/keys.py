"""Typed keys for what the aiohttp application shares between handlers."""

from __future__ import annotations

from aiohttp import web

from packager.config import Config
from packager.service.compose import Services

CONFIG = web.AppKey("config", Config)
SERVICES = web.AppKey("services", Services)
