"""Typed keys for what the aiohttp application shares between handlers."""

from __future__ import annotations

from aiohttp import web

from packager.config import Config
from packager.ingest import Ingest
from packager.store.store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
INGEST = web.AppKey("ingest", Ingest)
