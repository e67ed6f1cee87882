"""core.privacy on its own: the digests, the salt file and the text policy, without a bot.

The end-to-end tests check what a row keeps; these check the pieces they rely on, so a fast
run notices a salt that is readable by others, a digest of the wrong bytes, or a quiz secret
that got shorter.
"""

from __future__ import annotations

import hashlib
import hmac
import stat

import pytest

from core.privacy import (
    TextPolicy,
    installation_salt,
    keyed_digest,
    new_quiz_secret,
    salted_digest,
)

#: Not ASCII, so an encoding other than UTF-8 gives other bytes (or fails).
WORD = "città è più"


def test_the_salted_digest_is_sha256_of_salt_then_utf8_text():
    expected = hashlib.sha256(b"salt" + WORD.encode("utf-8")).hexdigest()
    assert salted_digest(b"salt", WORD) == expected
    assert salted_digest(b"other", WORD) != expected


def test_the_keyed_digest_is_hmac_sha256_of_the_utf8_text():
    expected = hmac.new(b"k" * 32, WORD.encode("utf-8"), hashlib.sha256).hexdigest()
    assert keyed_digest(b"k" * 32, WORD) == expected


def test_each_quiz_secret_is_32_fresh_bytes():
    secrets_made = {new_quiz_secret() for _ in range(20)}
    assert len(secrets_made) == 20
    assert {len(s) for s in secrets_made} == {32}


def test_the_salt_is_made_once_beside_the_database_readable_by_its_owner_only(tmp_path):
    db = tmp_path / "deep" / "er" / "queries.sqlite3"  # its folder does not exist yet
    salt = installation_salt(db)
    path = tmp_path / "deep" / "er" / "queries.sqlite3.salt"
    assert path.is_file() and path.read_bytes() == salt
    assert len(salt) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["queries.sqlite3.salt"]
    # Kept, not made again: digests of repeated inputs stay comparable across restarts.
    assert installation_salt(db) == salt
    assert installation_salt(tmp_path / "other.sqlite3") != salt


@pytest.mark.parametrize("mode", ["full", "hashed", "none"])
def test_what_each_mode_keeps(mode):
    policy = TextPolicy(mode, salt=b"s")
    kept = policy.kept(WORD)
    guess = policy.kept("cane", dictionary_word=True)
    if mode == "full":
        assert (kept, guess, policy.keeps_text) == (WORD, "cane", True)
    elif mode == "hashed":
        assert (kept, guess, policy.keeps_text) == (salted_digest(b"s", WORD), "", False)
    else:
        assert (kept, guess, policy.keeps_text) == ("", "", False)


def test_an_unknown_mode_is_refused_with_the_modes_named():
    with pytest.raises(ValueError, match="'full', 'hashed' or 'none', not 'some'"):
        TextPolicy("some")  # type: ignore[arg-type]


def test_the_defaults_keep_the_text_and_hash_without_a_salt():
    """`TextPolicy()` is what a store made without settings uses: the words, as `full`."""
    assert TextPolicy().kept(WORD) == WORD and TextPolicy().keeps_text
    assert TextPolicy("hashed").kept(WORD) == salted_digest(b"", WORD)
