"""Moved to `core.sentiment.service`; this name stays for existing imports."""

from core.sentiment.service import (  # noqa: F401
    HOW_TO_TRAIN,
    TRAINING_HINT,
    SentimentResult,
    SentimentService,
)
