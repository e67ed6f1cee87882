"""benchmarks/mutation.py's one judgement: which survivors change no behaviour.

A survivor wrongly called equivalent would hide a weak test from the kill ratio, so the
recognised class is narrow; these pin both sides of it.
"""

from __future__ import annotations

import pytest

from benchmarks.mutation import Tally, equivalence, settle_equivalents


def _diff(before: str, after: str) -> str:
    return (f"# core.x.x_f__mutmut_1: survived\n--- core/x.py\n+++ core/x.py\n@@ -1,3 +1,3 @@\n"
            f" def f():\n-{before}\n+{after}\n     return 1\n")


@pytest.mark.parametrize("before, after", [
    ('    rows = conn.execute("SELECT id FROM quizzes WHERE guild_id = ?", (g,))',
     '    rows = conn.execute("select id from quizzes where guild_id = ?", (g,))'),
    ('            "(guess_secret IS NOT NULL OR prompt != \'\' OR id IN "',
     '            "(GUESS_SECRET IS NOT NULL OR PROMPT != \'\' OR ID IN "'),
    ('                "created_at < ?", (guild_id, cutoff))',
     '                "CREATED_AT < ?", (guild_id, cutoff))'),
    ('        if rows[0]["closed_at"] is not None:',
     '        if rows[0]["CLOSED_AT"] is not None:'),
    ('    custom = {int(r["guild_id"]): 1 for r in overrides}',
     '    custom = {int(r["GUILD_ID"]): 1 for r in overrides}'),
    ('        conn.execute("COMMIT")', '        conn.execute("commit")'),
    ('                "show_names, creator_id, created_at, ends_at, guess_secret) "',
     '                "SHOW_NAMES, CREATOR_ID, CREATED_AT, ENDS_AT, GUESS_SECRET) "'),
    ('    yield "".join(buffer).encode("utf-8")', '    yield "".join(buffer).encode("UTF-8")'),
])
def test_sql_row_keys_and_codecs_in_other_case_are_equivalent(before, after):
    assert equivalence(_diff(before, after)) is not None


@pytest.mark.parametrize("before, after", [
    # A message students read: its case is what they see.
    ('        raise QuizNotFound("This quiz no longer exists.")',
     '        raise QuizNotFound("THIS QUIZ NO LONGER EXISTS.")'),
    # Words that happen to be SQL words, in a message.
    ('    raise InvalidInput("Set a value where it is needed.")',
     '    raise InvalidInput("SET A VALUE WHERE IT IS NEEDED.")'),
    # A list of words in a message.
    ('    note = "red, green, blue"', '    note = "RED, GREEN, BLUE"'),
    # A quoted SQL value: its case is data.
    ('    conn.execute("SELECT 1 FROM t WHERE status = \'ok\'")',
     '    conn.execute("select 1 from t where status = \'OK\'")'),
    # A key of a plain dict, not a database row.
    ('    elapsed = saved["elapsed"]', '    elapsed = saved["ELAPSED"]'),
    # Not only case.
    ('    rows = conn.execute("SELECT id FROM quizzes WHERE guild_id = ?", (g,))',
     '    rows = conn.execute("XXSELECT id FROM quizzes WHERE guild_id = ?XX", (g,))'),
    # Case outside a string literal.
    ('    value = Row["id"]', '    value = ROW["id"]'),
])
def test_anything_else_is_not(before, after):
    assert equivalence(_diff(before, after)) is None


def test_equivalents_leave_the_ratio():
    tally = Tally(killed=9, survived=2)
    diffs = {"a": _diff('    conn.execute("COMMIT")', '    conn.execute("commit")'),
             "b": _diff('    x = "Hello."', '    x = "HELLO."')}
    settle_equivalents(tally, diffs)
    assert (tally.survived, tally.equivalent, tally.ratio) == (1, 1, 0.9)
