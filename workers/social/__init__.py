"""Platform clients (Instagram, Facebook Pages, YouTube Shorts, TikTok) behind one interface (``base``)."""

from __future__ import annotations

import importlib

from workers.social.base import PlatformClient

_CLIENTS = {
    "instagram": "workers.social.instagram:InstagramClient",
    "facebook": "workers.social.facebook:FacebookClient",
    "youtube": "workers.social.youtube:YouTubeClient",
    "tiktok": "workers.social.tiktok:TikTokClient",
}


def client_class(platform: str) -> type[PlatformClient]:
    module, _, name = _CLIENTS[platform].partition(":")
    return getattr(importlib.import_module(module), name)
