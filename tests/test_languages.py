"""A class in its own language, end to end: the real bot against the loopback Discord.

- the synced commands carry an Italian description for every command, option and choice;
- the same /mask from an `it` client and an `en-US` client gets its answer, and its "no [MASK]"
  error, in each client's language, and the row keeps the language it was answered in;
- a public answer follows the server's language (its Discord language, or `/config language`),
  a private one the member's;
- a quiz card in an Italian server is Italian.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.interactions.registry import COMMANDS
from tests.bot_harness import Harness, bot_config, running_bot
from tests.discord_emulator import DiscordEmulator

pytestmark = pytest.mark.slow

EPHEMERAL = 1 << 6


async def ask(h: Harness, name: str, options: dict[str, Any], **kwargs: Any):
    record = await h.emu.invoke(name, options, **kwargs)
    await record.wait_done(timeout=30)
    deadline = asyncio.get_running_loop().time() + 30
    while any("⏳" in (m.get("content") or "") for m in record.visible_messages):
        assert asyncio.get_running_loop().time() < deadline, record.visible_messages
        await asyncio.sleep(0.02)
    return record


def embed_of(record) -> dict[str, Any]:
    return record.visible_messages[0]["embeds"][0]


@pytest.fixture
async def h(tiny_config, tmp_path, caplog):
    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0})
    async with DiscordEmulator() as emu, running_bot(config, caplog, emulator=emu) as harness:
        registry = harness.services.engine.registry
        await asyncio.gather(*(registry.get(spec) for spec in registry.specs))
        yield harness


async def test_synced_commands_carry_italian_descriptions_for_every_option_and_choice(h):
    [put] = h.emu.find_requests("PUT", r"/applications/\d+/commands$")[-1:]
    synced = {c["name"]: c for c in put.json}
    # A subcommand ("explain mask") is checked inside its group, option by option.
    assert {name.split()[0] for name in COMMANDS} <= set(synced), "every student command"
    missing = []

    def check(path: str, item: dict[str, Any]) -> None:
        italian = (item.get("description_localizations") or {}).get("it")
        if not italian or len(italian) > 100:
            missing.append(f"{path}: {italian!r}")
        for option in item.get("options") or []:
            check(f"{path} {option['name']}", option)
        for choice in item.get("choices") or []:
            if not (choice.get("name_localizations") or {}).get("it"):
                missing.append(f"{path} choice {choice['name']}")

    for name, command in synced.items():
        if command.get("type", 1) in (2, 3):  # a right-click menu: its name is its label
            if not (command.get("name_localizations") or {}).get("it"):
                missing.append(f"{name} (menu name)")
            continue
        check(name, command)
        assert "name_localizations" not in command or command.get("type", 1) != 1 or not (
            command["name_localizations"] or {}).get("it"), f"/{name} keeps its name"
    assert not missing, missing
    mask = synced["mask"]
    assert mask["description_localizations"]["it"] == (
        "Chiedi a DistilBERT quali parole stanno bene al posto di [MASK].")
    assert mask["options"][0]["description_localizations"]["it"].startswith("Una frase con")
    assert mask["description"] == "Ask DistilBERT which words fit a [MASK]."


async def test_the_same_mask_in_italian_and_in_english(h):
    guild = h.emu.guild
    italian = guild.add_member("studentessa", roles=["Student"])
    guild.member_locales[italian] = "it"
    asked = {"text": "Paris is the [MASK] of France.", "top_k": 3, "private": True}
    it_answer = await ask(h, "mask", asked, user_id=italian)
    en_answer = await ask(h, "mask", asked)
    it_error = await ask(h, "mask", {"text": "Paris is the capital of France."}, user_id=italian)
    en_error = await ask(h, "mask", {"text": "Paris is the capital of France."})
    rows = await h.rows()

    assert embed_of(it_answer)["title"] == "Parole per [MASK]"
    assert embed_of(it_answer)["fields"][0]["name"] == "Frase migliore"
    assert embed_of(it_answer)["footer"]["text"].startswith("modello: ")
    assert "0," in embed_of(it_answer)["description"]  # "0,412": the Italian decimal comma
    assert embed_of(en_answer)["title"] == "Fillers for [MASK]"
    assert "0." in embed_of(en_answer)["description"]
    for error in (it_error, en_error):
        assert error.ephemeral and all(m["flags"] & EPHEMERAL for m in error.visible_messages)
    assert "Il tuo testo non contiene [MASK]" in it_error.text, it_error.text
    assert "Your text has no [MASK]" in en_error.text, en_error.text
    assert [(r["status"], r["locale"]) for r in rows] == [
        ("ok", "it"), ("ok", "en"), ("user_error", "it"), ("user_error", "en")]


async def test_public_answers_follow_the_server_and_private_ones_the_member(h):
    guild = h.emu.guild
    guild.locale = "it"  # an Italian server...
    # ...where an English-speaking student asks in public, then in private.
    public = await ask(h, "mask", {"text": "Paris is the [MASK] of France.", "top_k": 2})
    private = await ask(h, "mask", {"text": "Paris is the [MASK] of France.", "top_k": 2,
                                    "private": True})
    assert not public.ephemeral and embed_of(public)["title"] == "Parole per [MASK]"
    assert private.ephemeral and embed_of(private)["title"] == "Fillers for [MASK]"

    # A moderator sets the server's language: it beats the server's Discord language.
    chosen = await ask(h, "config", {"language": "en"}, subcommand="language",
                       user_id=h.emu.moderator_id)
    assert "English" in chosen.text, chosen.text
    again = await ask(h, "mask", {"text": "Paris is the [MASK] of France.", "top_k": 2})
    assert embed_of(again)["title"] == "Fillers for [MASK]"
    back = await ask(h, "config", {"language": "server"}, subcommand="language",
                     user_id=h.emu.moderator_id)
    assert "Discord" in back.text
    third = await ask(h, "mask", {"text": "Paris is the [MASK] of France.", "top_k": 2})
    assert embed_of(third)["title"] == "Parole per [MASK]"
    rows = await h.rows()
    assert [r["locale"] for r in rows if r["command"] == "mask"] == ["it", "en", "en", "it"]


async def test_a_picture_is_drawn_and_described_in_the_askers_language(h):
    guild = h.emu.guild
    italian = guild.add_member("studente", roles=["Student"])
    guild.member_locales[italian] = "it"
    asked = {"text": "The cat sat on the mat.", "private": True}
    it_record = await ask(h, "attention", asked, user_id=italian)
    en_record = await ask(h, "attention", asked)
    it_texts, it_alts = shown_in_layout(it_record.visible_messages[0])
    en_texts, en_alts = shown_in_layout(en_record.visible_messages[0])
    [it_alt], [en_alt] = it_alts, en_alts
    assert it_alt.startswith("Mappa di calore dell'attenzione, "), it_alt
    assert "strato" in it_alt and "I più forti:" in it_alt
    assert en_alt.startswith("Attention heatmap, "), en_alt
    assert it_texts[0].startswith("### Attenzione · strato"), it_texts
    assert en_texts[0].startswith("### Attention · layer"), en_texts
    # The same weights drawn twice: only the words on the picture differ (title, axes).
    [(_, it_png)], [(_, en_png)] = it_record.files, en_record.files
    assert it_png[:8] == en_png[:8] == b"\x89PNG\r\n\x1a\n" and it_png != en_png


def shown_in_layout(message: dict[str, Any]) -> tuple[list[str], list[str]]:
    """A Components V2 message's text displays and its media gallery's alt texts."""
    texts, alts = [], []
    todo = list(message.get("components") or [])
    while todo:
        item = todo.pop(0)
        if item.get("type") == 10:
            texts.append(item["content"])
        alts += [m["description"] for m in item.get("items") or [] if m.get("description")]
        todo += item.get("components") or []
    return texts, alts


async def test_a_quiz_card_in_an_italian_server_is_italian(h):
    h.emu.guild.locale = "it"  # the teacher's own client stays English
    before = len(h.emu.channel_messages)
    started = await ask(h, "quiz", {"sentence": "The [MASK] sat on the mat.", "seconds": 60},
                        subcommand="mask", user_id=h.emu.moderator_id)
    assert started.ephemeral and "started" in started.text, started.text  # the teacher's
    [card] = h.emu.channel_messages[before:]
    card = h.emu.message(card["id"])
    embed = card["embeds"][0]
    assert embed["title"] == "Quiz di classe: quale parola si nasconde dietro la maschera?"
    assert "Premi **Indovina**" in embed["description"]
    assert embed["fields"][0] == {"name": "Risposte", "value": "ancora nessuno",
                                  "inline": True}
    labels = [c.get("label") for row in card["components"] for c in row["components"]]
    assert labels == ["Indovina", "Rivela ora"]
    # Revealed (by the button): the card, its chart's alt text, still Italian.
    reveal_id = card["components"][0]["components"][1]["custom_id"]
    click = await h.emu.click(card["id"], reveal_id, user_id=h.emu.moderator_id)
    await click.wait_done(timeout=30)
    revealed = h.emu.message(card["id"])
    assert revealed["embeds"][0]["title"].endswith("· rivelato"), revealed["embeds"][0]
    assert "Nessuno ha risposto." in revealed["embeds"][0]["description"]
    [chart] = revealed["attachments"]
    assert chart["description"].startswith("Rivelazione del quiz."), chart


def test_the_readmes_italian_class_config_passes_check_config(tmp_path, capsys):
    """The README's config for an Italian class (hub ids, nothing downloaded: check-config
    without --load reads it offline) is one `tlm-bot check-config` accepts."""
    from pathlib import Path

    from bot.cli import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- italian-class-config -->\n```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "italian.toml"
    config.write_text(block + f'\n[database]\npath = "{tmp_path / "tlm.db"}"\n')
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "multilingual = {'id': 'google-bert/bert-base-multilingual-cased'" in out, out
    assert out.rstrip().endswith("config OK")


async def test_the_dashboard_follows_accept_language_and_can_be_switched(tiny_config, tmp_path,
                                                                          caplog):
    """The browser's Accept-Language picks the dashboard's language; `?lang=` switches it
    and a cookie keeps the switch over the browser's preference."""
    from tests.test_dashboard import BEHIND_PROXY, _client, _link

    config = bot_config(tiny_config, tmp_path, discord={"default_cooldown_uses": 0},
                        dashboard=BEHIND_PROXY)
    async with DiscordEmulator() as emu, running_bot(config, caplog, emulator=emu) as h:
        await ask(h, "tokens", {"text": "Ciao mi chiamo Mattia"})
        link = await _link(h)
        base = h.services.dashboard.base_url
        overview = f"{base.rstrip('/')}/g/{emu.guild_id}/"
        italian = {"Accept-Language": "it-IT,it;q=0.9,en;q=0.5"}
        async with _client("203.0.113.7") as browser:
            async with browser.get(link, headers=italian) as opened:
                assert "Apertura della dashboard" in await opened.text()
            async with browser.get(overview, headers=italian) as page:
                html = await page.text()
            assert "<html lang=it>" in html and "<h2>Panoramica · ultimi 7 giorni</h2>" in html
            assert "Richieste per giorno, per comando" in html and ">italiano</a>" in html
            async with browser.get(overview + "?lang=en", headers=italian) as page:
                html = await page.text()
                assert page.cookies["tlm_lang"].value == "en"
            assert "<html lang=en>" in html and "Overview · last 7 days" in html
            async with browser.get(overview + "queries", headers=italian) as page:
                html = await page.text()  # the cookie outranks Accept-Language now
            assert "<html lang=en>" in html and "matching queries" in html
        async with _client("203.0.113.8") as stranger:
            async with stranger.get(base, headers=italian) as home:
                assert "Dashboard di tlm-bot" in await home.text()
            async with stranger.get(base, headers={"Accept-Language": "fr-FR,de;q=0.8"}) as home:
                assert "tlm-bot dashboard" in await home.text()  # nothing it speaks: English
