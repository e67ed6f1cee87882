"""What the log may hold (bot.logging_policy), and check-config's word on Ray: issue #23.

The end-to-end check, `tlm-bot -v run` under log_inputs = "none" with no marker and no
interaction token in its log, is in tests/test_bot_subprocess.py; these are the pieces, through
`bot.cli.main` as an operator runs it.
"""

from __future__ import annotations

import logging
import sys

import pytest

from bot.cli import EXIT_USER, main
from tests.conftest import write_tiny_config


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def lines():
    """A handler on the loggers under test (their filters run before any handler)."""
    handler = Lines()
    names = ("asyncio", "discord.http", "discord.gateway", "bot.dashboard.app")
    for name in names:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in names:
        logging.getLogger(name).removeHandler(handler)


def test_a_flood_of_one_error_is_logged_a_few_times_then_counted(tiny_models, tmp_path,
                                                                 capsys, lines):
    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    assert main(["check-config", str(config)]) == 0  # configures logging as every command does
    asyncio_log = logging.getLogger("asyncio")
    for _ in range(2000):  # what asyncio says when accept() runs out of descriptors
        try:
            raise OSError(24, "Too many open files")
        except OSError:
            asyncio_log.error("socket.accept() out of system resource", exc_info=True)
    flood = [line for line in lines.lines if "out of system resource" in line]
    assert 1 < len(flood) <= 10, len(flood)
    assert "counted, not shown" in flood[-1]
    # Different lines are not held back.
    for i in range(20):
        logging.getLogger("bot.dashboard.app").warning("refused a link from 192.0.2.%d", i)
    assert len([line for line in lines.lines if "refused a link" in line]) == 5 + 1


def test_urls_in_discords_log_lines_lose_their_tokens(tiny_models, tmp_path, capsys, lines):
    config = write_tiny_config(tmp_path / "config.toml", tiny_models)
    assert main(["check-config", str(config)]) == 0
    token = "aW50ZXJhY3Rpb246" + "x" * 40
    logging.getLogger("discord.http").warning(
        "We are being rate limited. %s %s responded with 429. Retrying in %.2f seconds.",
        "POST", f"https://discord.com/api/v10/webhooks/1234/{token}/messages/@original", 0.5)
    assert lines.lines and token not in lines.lines[-1]
    assert "/webhooks/1234/<token>/messages/@original" in lines.lines[-1]


def test_verbose_keeps_payload_loggers_quiet_unless_debug_discord(tiny_models, tmp_path,
                                                                  capsys):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models))
    assert main(["-v", "check-config", config]) == 0
    assert logging.getLogger("discord.gateway").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("discord.http").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("aiosqlite").getEffectiveLevel() == logging.INFO
    assert logging.getLogger("bot").getEffectiveLevel() == logging.DEBUG  # -v still works
    assert "--debug-discord" not in capsys.readouterr().err

    assert main(["check-config", config, "--debug-discord"]) == 0
    assert logging.getLogger("discord.gateway").getEffectiveLevel() == logging.DEBUG
    err = capsys.readouterr().err
    assert "--debug-discord" in err and "students' text" in err


def test_check_config_says_when_the_ray_backend_has_no_ray(tiny_models, tmp_path, capsys,
                                                          monkeypatch):
    config = str(write_tiny_config(tmp_path / "config.toml", tiny_models,
                                   engine={"backend": "ray"}))
    pytest.importorskip("ray")
    assert main(["check-config", config]) == 0
    assert "config OK" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    code = main(["check-config", config])
    out, err = capsys.readouterr()
    assert code == EXIT_USER and "config OK" not in out
    assert err.startswith("error: ") and "needs Ray Serve" in err and "pip install" in err
