"""Signed dashboard links and sessions: HMAC-SHA256 over (purpose, guild, user, expiry, epoch,
link id).

Why signed tokens: a link made by `/logs dashboard` must still open after a restart, and the
bot keeps no session table to clean up. What a token grants is fixed inside it (one guild, one
instructor, an expiry, the guild's session epoch) and the MAC covers all of it, so changing any
part (another guild's id, a later expiry) breaks it. The purpose is part of the MAC: a session
cookie is not a link and a link is not a session, so neither can stand in for the other.
What a signature cannot say, whether the grant still holds, `bot.dashboard.access` checks on
every request: the guild's epoch (moved on by `/logs end-sessions`), the link's single use, and
the instructor's rights in Discord.

The key is ``TLM_DASHBOARD_SECRET`` when set (several bot processes can then share links), else
32 random bytes generated once and kept in the database's ``secrets`` table; it never appears in
a log or a page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from core.storage.database import Database

log = logging.getLogger(__name__)

SECRET_ENV = "TLM_DASHBOARD_SECRET"
Purpose = Literal["link", "session"]


_DIGITS = re.compile(r"[0-9]{1,20}")
_LINK_ID = re.compile(r"[A-Za-z0-9_-]{0,32}")


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: reading one guild's dashboard until `expires_at`."""

    guild_id: int
    user_id: int
    expires_at: int  # unix seconds
    #: The guild's session epoch when the token was made (`access.Sessions`).
    epoch: int = 0
    #: A link's one-time id, recorded when the link is exchanged; empty in a session.
    link_id: str = ""


def new_link_id() -> str:
    """A link's one-time id (16 characters of the `_LINK_ID` alphabet)."""
    return secrets.token_urlsafe(12)


class Signer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the dashboard key must be at least 16 bytes")
        self._key = key

    def issue(self, purpose: Purpose, grant: Grant) -> str:
        if not _LINK_ID.fullmatch(grant.link_id):
            raise ValueError("a link id is up to 32 characters of [A-Za-z0-9_-]")
        body = (f"{grant.guild_id}.{grant.user_id}.{grant.expires_at}.{grant.epoch}."
                f"{grant.link_id}")
        return f"{body}.{self._mac(purpose, body)}"

    def verify(self, purpose: Purpose, token: str, now: datetime | None = None) -> Grant | None:
        """The grant of a genuine, unexpired token of this purpose; None for anything else."""
        parts = token.split(".") if isinstance(token, str) and len(token) < 200 else []
        if (len(parts) != 6 or not all(_DIGITS.fullmatch(p) for p in parts[:4])
                or not _LINK_ID.fullmatch(parts[4]) or not parts[5].isascii()):
            return None  # (compare_digest raises on non-ASCII text)
        body = ".".join(parts[:5])
        if not hmac.compare_digest(self._mac(purpose, body), parts[5]):
            return None
        grant = Grant(int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]), parts[4])
        now_s = (now or datetime.now(timezone.utc)).timestamp()
        return grant if now_s < grant.expires_at else None

    def _mac(self, purpose: str, body: str) -> str:
        digest = hmac.new(self._key, f"tlm-dashboard|{purpose}|{body}".encode(),
                          hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def dashboard_key(db: Database, environ: Mapping[str, str] | None = None) -> bytes:
    """The signing key: from the environment, else generated once and kept in the database."""
    configured = (environ if environ is not None else os.environ).get(SECRET_ENV, "").strip()
    if configured:
        if len(configured) < 16:
            raise ValueError(f"{SECRET_ENV} must be at least 16 characters")
        return configured.encode()
    async with db.transaction() as conn:
        await conn.execute("INSERT OR IGNORE INTO secrets (name, value) VALUES (?, ?)",
                           ("dashboard", secrets.token_bytes(32)))
    rows = await db.fetchall("SELECT value FROM secrets WHERE name = 'dashboard'")
    return bytes(rows[0]["value"])
