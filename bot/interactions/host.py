"""What the interaction layer needs from the bot, and nothing more.

The front door (`bot.interactions.turn`) and the extensions in `cogs/` reach the services through
`interaction.client` typed as this protocol, so neither imports the bot class: `bot.client`
(the `discord.py` Bot subclass) sits above them and satisfies it. A test can hand the layer any
object with these attributes.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Protocol

from discord import app_commands

from bot.interactions.streaming import EditPacing
from core.config import Config
from core.inference.engine import InferenceEngine
from core.policy import Policy
from core.sentiment.service import SentimentService
from core.storage.guild_settings import SettingsStore
from core.storage.querylog import QueryLog, QueryRecord
from core.storage.quizzes import QuizStore
from core.storage.student_data import StudentData

if TYPE_CHECKING:
    from bot.dashboard import Dashboard


class Host(Protocol):
    config: Config
    engine: InferenceEngine
    querylog: QueryLog
    settings: SettingsStore
    policy: Policy
    sentiment: SentimentService
    quizzes: QuizStore
    #: Every store of student data (/mydata show and delete).
    student_data: StudentData
    dashboard: Dashboard | None
    tree: app_commands.CommandTree
    #: Edits of streamed answers, per channel (`bot.interactions.streaming`).
    edit_pacing: EditPacing

    def handling(self) -> contextlib.AbstractContextManager[None]:
        """Count an interaction as in flight, so a shutdown waits for its reply and row."""
        ...

    async def record_query(self, record: QueryRecord) -> None:
        """Write one query-log row; never raises."""
        ...

    async def is_owner(self, user: Any, /) -> bool:
        """Whether `user` owns the application (`/sync`)."""
        ...

    async def sync_commands(self, guild_id: int | None, *, force: bool = True) -> Any:
        """Register the command tree with Discord (`/sync`)."""
        ...
