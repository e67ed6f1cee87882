"""The buttons under students' answers (`bot.interactions.answers`), registered with discord.py
so a click on any message, sent before or after a restart, reaches them."""

from __future__ import annotations

from discord.ext import commands

from bot.interactions.answers import FeedbackButton, FollowUpButton, PickSelect, WhyButton


async def setup(bot: commands.Bot) -> None:
    bot.add_dynamic_items(FollowUpButton, WhyButton, FeedbackButton, PickSelect)
