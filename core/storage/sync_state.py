"""Which command tree Discord last received, per scope, so a start syncs only after a change.

Discord rate-limits command syncs and a global sync takes up to an hour to reach every server,
so syncing blindly at every start (or never, leaving a changed option limit unregistered) are
both wrong. The bot hashes the JSON it would send (the same JSON `CommandTree.sync` sends) and
compares it with the hash stored here after the last successful sync.

The digest covers the application id too: a new token for another application with the same
database must still get its commands. The JSON is canonical (commands sorted by type and name,
keys sorted), so the order cogs were loaded in does not count as a change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from core.storage.database import Database

GLOBAL = "global"


def scope_key(guild_id: int | None) -> str:
    """'global', or 'guild:<id>' for commands registered in one server only."""
    return GLOBAL if guild_id is None else f"guild:{guild_id}"


def tree_digest(application_id: int, commands: Iterable[Mapping[str, Any]]) -> str:
    """sha256 of the canonical JSON of `commands` (as sent to Discord) for this application."""
    ordered = sorted(commands, key=lambda c: (int(c.get("type") or 1), str(c.get("name"))))
    text = json.dumps({"application_id": int(application_id), "commands": ordered},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SyncState:
    """The `command_sync` table: one digest per scope."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def last_digest(self, scope: str) -> str | None:
        rows = await self._db.fetchall(
            "SELECT tree_sha256 FROM command_sync WHERE scope = ?", (scope,))
        return rows[0]["tree_sha256"] if rows else None

    async def remember(self, scope: str, digest: str) -> None:
        """Record a successful sync of the tree with this digest."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO command_sync (scope, tree_sha256, synced_at) VALUES (?, ?, ?)"
                " ON CONFLICT (scope) DO UPDATE SET tree_sha256 = excluded.tree_sha256,"
                " synced_at = excluded.synced_at",
                (scope, digest, now),
            )
