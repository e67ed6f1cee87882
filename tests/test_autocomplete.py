"""Autocomplete of command names in /logs and /config, read from the live tree.

Student options there are Discord user/member options, which Discord's own picker completes;
this checks that every *command* option is autocompleted, and what the bot offers.
"""

from __future__ import annotations

from typing import Any

from tests.bot_harness import bot_config, running_bot


def options_of(command: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(subcommand name, option) for every option of every subcommand."""
    found = []
    for sub in command.get("options") or []:
        for option in sub.get("options") or []:
            found.append((sub["name"], option))
    return found


async def test_command_and_student_options_in_logs_and_config(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with running_bot(config, caplog) as h:
        emu = h.emu
        synced = {c["name"]: c for c in emu.synced_commands[emu.guild_id]}
        staff = dict(user_id=emu.moderator_id)
        logs = await emu.autocomplete("logs", {"command": "log"}, "command",
                                      subcommand="recent", **staff)
        export = await emu.autocomplete("logs", {"command": "/HEL"}, "command",
                                        subcommand="export", **staff)
        rules = await emu.autocomplete("config", {"command": "mask"}, "command",
                                       subcommand="allow", **staff)
        every = await emu.autocomplete("config", {}, "command", subcommand="cooldown", **staff)
        # A name picked from the list filters the log.
        await h.run("help")
        await h.run("help")
        await h.rows()  # both rows committed
        listed = await h.run("logs", {"command": "help"}, subcommand="recent", **staff)
    kinds = {}
    for name in ("logs", "config"):
        for sub, option in options_of(synced[name]):
            kinds[f"{name} {sub} {option['name']}"] = option
    commands = {k: o for k, o in kinds.items() if k.endswith(" command")}
    assert set(commands) == {"logs recent command", "logs export command",
                             "config allow command", "config deny command",
                             "config clear command", "config cooldown command",
                             "config why command"}
    assert all(o.get("autocomplete") for o in commands.values()), commands
    assert commands["logs recent command"].get("max_length") == 32
    # Students are picked with Discord's own member picker (USER options), not typed names.
    students = {k: o["type"] for k, o in kinds.items() if k.endswith(" user")}
    assert students and set(students.values()) == {6}, students
    assert {c["value"] for c in logs} >= {"logs recent", "logs stats", "logs export"}
    assert all("log" in c["value"] for c in logs)
    assert [c["value"] for c in export] == ["help"]
    assert {c["value"] for c in rules} == {"mask", "maskpair"}
    assert "*" in {c["value"] for c in every} and len(every) <= 25
    assert "help" in listed.text and "Page 1 of 1 · 2 queries" in listed.text
