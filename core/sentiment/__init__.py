"""Sentiment as in the course notebook: a frozen encoder's sentence vector -> logistic regression.

The encoder is never fine-tuned; students see that a linear model on top of pretrained features
already separates positive from negative. One idea per module:

- `data`: reading labelled files and uploads (`load_labelled_data`, `parse_labelled_bytes`);
- `classifier`: the two arrays, predicting, the training report (`SentimentClassifier`);
- `persistence`: saving and loading without pickle, atomically (`save_classifier`);
- `training`: featurize, split, fit, report (`train_classifier`);
- `service`: the one live classifier the bot answers with (`SentimentService`; imported from
  `core.sentiment.service`, since it needs the inference engine and the rest does not).

The names below are what callers used when this was one module; they stay importable from here.
"""

from __future__ import annotations

from core.sentiment.classifier import (
    EncoderInfo,
    Pooling,
    SentimentClassifier,
    SentimentPrediction,
    TrainingReport,
)
from core.sentiment.data import (
    DEFAULT_LABEL_NAMES,
    MAX_LABEL_NAME_CHARS,
    LabelledData,
    load_labelled_data,
    parse_labelled_bytes,
    read_capped,
)
from core.sentiment.persistence import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    NPZ_NAME,
    load_classifier,
    save_classifier,
)
from core.sentiment.training import FEATURIZE_CHUNK, Featurize, featurize_all, train_classifier

__all__ = [
    "DEFAULT_LABEL_NAMES", "FEATURIZE_CHUNK", "FORMAT_VERSION", "MANIFEST_NAME",
    "MAX_LABEL_NAME_CHARS", "NPZ_NAME", "EncoderInfo", "Featurize", "LabelledData", "Pooling",
    "SentimentClassifier", "SentimentPrediction", "TrainingReport", "featurize_all",
    "load_classifier", "load_labelled_data", "parse_labelled_bytes", "read_capped",
    "save_classifier", "train_classifier",
]
