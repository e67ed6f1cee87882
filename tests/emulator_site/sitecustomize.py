"""Point discord.py at the test Discord emulator when TLM_DISCORD_EMULATOR_URL is set.

A bot started as a subprocess (the real entry point) gets this directory on PYTHONPATH from
`DiscordEmulator.env()`, so the product code carries no test hook. Without the variable this
module does nothing, so it is harmless on any PYTHONPATH.
"""

from __future__ import annotations

import os


def apply_emulator_patch(url: str) -> None:
    """Send REST, gateway and CDN traffic to `url` (http://127.0.0.1:PORT)."""
    import discord
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = url + "/api/v10"
    ws_url = "ws://" + url.split("://", 1)[1] + "/gateway/"
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(ws_url)
    discord.Asset.BASE = url


_URL = os.environ.get("TLM_DISCORD_EMULATOR_URL")
if _URL:
    apply_emulator_patch(_URL.rstrip("/"))
