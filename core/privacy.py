"""What is kept of a student's own words, decided in one place.

``database.log_inputs`` says it for the whole installation:

- ``"full"``: the text itself.
- ``"hashed"``: a salted SHA-256 (`salted_digest`), enough to spot repeats. The salt is one per
  installation, kept beside the database (`installation_salt`): without it a digest of a short
  input is reversed by hashing guesses; with it, by whoever also holds the salt file.
- ``"none"``: nothing.

A quiz guess is one word from a language's vocabulary, so a digest of it is reversed by hashing
a word list, salt or not. Guesses are therefore compared through `keyed_digest` under a secret
of their own quiz (`new_quiz_secret`), which the quiz store destroys at the reveal
(`core.storage.quizzes`): after that, no file holds anything a guess can be recovered from.

`core.storage.querylog` (rows) and `core.storage.quizzes` (guesses) both ask `TextPolicy`; no
other module hashes a student's words.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Literal

LogInputs = Literal["full", "hashed", "none"]
LOG_INPUTS: tuple[str, ...] = ("full", "hashed", "none")


def salted_digest(salt: bytes, text: str) -> str:
    """sha256(salt + UTF-8 text), hex: what ``log_inputs = "hashed"`` stores."""
    return hashlib.sha256(salt + text.encode("utf-8")).hexdigest()


def keyed_digest(secret: bytes, text: str) -> str:
    """HMAC-SHA256 of `text` under `secret`, hex: comparable while the secret lives, and
    nothing at all once it is destroyed."""
    return hmac.new(secret, text.encode("utf-8"), hashlib.sha256).hexdigest()


def new_quiz_secret() -> bytes:
    """A fresh secret for one quiz's guesses (destroyed at its reveal)."""
    return secrets.token_bytes(32)


def installation_salt(db_path: Path) -> bytes:
    """The per-installation salt for ``log_inputs = "hashed"``, created (0600) beside the
    database the first time."""
    path = db_path.with_name(db_path.name + ".salt")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
    return path.read_bytes()


class TextPolicy:
    """One installation's ``log_inputs`` and salt: what is kept of a student's text."""

    def __init__(self, log_inputs: LogInputs = "full", salt: bytes = b"") -> None:
        if log_inputs not in LOG_INPUTS:
            raise ValueError(f"log_inputs must be 'full', 'hashed' or 'none', not {log_inputs!r}")
        self.log_inputs: LogInputs = log_inputs
        self._salt = salt

    @property
    def keeps_text(self) -> bool:
        """True only for "full": the words themselves (and display names, summaries) are kept."""
        return self.log_inputs == "full"

    def kept(self, text: str, *, dictionary_word: bool = False) -> str:
        """What is stored of `text` (already storable): the text, its salted digest, or "".

        `dictionary_word`: the text is one word a student picked (a quiz guess). Its digest
        would be reversed by hashing a word list, so under "hashed" nothing is kept, as under
        "none".
        """
        if self.log_inputs == "full":
            return text
        if self.log_inputs == "hashed" and not dictionary_word:
            return salted_digest(self._salt, text)
        return ""
