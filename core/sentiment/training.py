"""Training: featurize through the caller's engine, hold out a stratified test set, fit, report.

Features come from a `Featurize` callable (the inference engine in the bot, a local function in
the benchmark, a bag of words in the tests), so nothing here loads a model. The report compares
the classifier with always answering the majority class.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import numpy as np

from core.errors import InvalidInput
from core.i18n import lazy
from core.sentiment.classifier import EncoderInfo, SentimentClassifier, TrainingReport
from core.sentiment.data import LabelledData

log = logging.getLogger(__name__)

#: Turns texts into one float32 row per text, shape (n, dim). Supplied by the caller.
Featurize = Callable[[Sequence[str]], Awaitable[np.ndarray]]

#: Texts per featurize call: big enough for the engine to batch, small enough that other
#: students' requests get a turn between chunks while a class-sized training set is encoded.
FEATURIZE_CHUNK = 64


async def featurize_all(
    texts: Sequence[str], featurize: Featurize, *, chunk_size: int = FEATURIZE_CHUNK
) -> np.ndarray:
    """Featurize in chunks and check what comes back; a wrong shape is a featurizer bug."""
    parts: list[np.ndarray] = []
    for start in range(0, len(texts), chunk_size):
        chunk = list(texts[start : start + chunk_size])
        part = np.asarray(await featurize(chunk))
        if part.ndim != 2 or part.shape[0] != len(chunk):
            raise ValueError(f"featurize returned shape {part.shape} for {len(chunk)} texts")
        if parts and part.shape[1] != parts[0].shape[1]:
            raise ValueError(f"featurize changed dimension: {parts[0].shape[1]} -> {part.shape[1]}")
        if not np.all(np.isfinite(part)):
            raise ValueError("featurize returned non-finite values")
        parts.append(part.astype(np.float32, copy=False))
    return np.concatenate(parts, axis=0)


async def train_classifier(
    data: LabelledData,
    featurize: Featurize,
    encoder: EncoderInfo,
    *,
    test_size: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
    standardize: bool = False,
    chunk_size: int = FEATURIZE_CHUNK,
) -> tuple[SentimentClassifier, TrainingReport]:
    """Hold out a stratified test set, fit on the rest, and report against the majority baseline.

    Featurization awaits the engine chunk by chunk; the CPU-bound fitting runs in a worker
    thread so the bot keeps answering while a classifier trains.
    """
    from sklearn.model_selection import train_test_split

    started = time.perf_counter()
    n = len(data.texts)
    n_test = math.ceil(test_size * n)
    smallest = min(data.class_counts())
    if smallest < 2 or n_test < 2 or n - n_test < 2:
        raise InvalidInput(
            lazy(
                "Too few examples to train and test ({n} rows, {smallest} in the smaller "
                "class); give at least a handful of each class.",
                n=n, smallest=smallest)
        )
    labels = np.asarray(data.labels, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(n), test_size=test_size, stratify=labels, random_state=seed
    )

    features = await featurize_all(data.texts, featurize, chunk_size=chunk_size)
    featurize_seconds = time.perf_counter() - started

    estimator, dummy_accuracy, majority = await asyncio.to_thread(
        _fit,
        features[train_idx],
        labels[train_idx],
        features[test_idx],
        labels[test_idx],
        standardize=standardize,
        seed=seed,
        max_iter=max_iter,
    )
    classifier = SentimentClassifier.from_sklearn(estimator, encoder, data.label_names)
    # Score the folded weights, not the sklearn object: the report describes what is saved.
    predicted = (classifier.probabilities(features[test_idx])[:, 1] > 0.5).astype(np.int64)
    report = _report(
        labels[test_idx],
        predicted,
        dummy_accuracy,
        n_train=len(train_idx),
        label_names=data.label_names,
        encoder=encoder,
        seconds=time.perf_counter() - started,
        featurize_seconds=featurize_seconds,
        standardized=standardize,
        majority_label=data.label_names[majority],
    )
    classifier.report = report
    log.info(
        "trained sentiment classifier on %d sentences: accuracy %.3f (dummy %.3f) in %.1f s",
        report.n_train,
        report.accuracy,
        report.dummy_accuracy,
        report.seconds,
    )
    return classifier, report


def _fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    standardize: bool,
    seed: int,
    max_iter: int,
) -> tuple[Any, float, int]:
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(max_iter=max_iter, random_state=seed)
    estimator = make_pipeline(StandardScaler(), model) if standardize else model
    estimator.fit(x_train.astype(np.float64), y_train)
    dummy = DummyClassifier(strategy="most_frequent").fit(x_train, y_train)
    majority = int(dummy.predict(x_test[:1])[0])
    return estimator, float(dummy.score(x_test, y_test)), majority


def _report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    dummy_accuracy: float,
    **fields: Any,
) -> TrainingReport:
    from sklearn.metrics import accuracy_score, precision_score, recall_score

    precision = precision_score(y_true, y_pred, labels=[0, 1], average=None, zero_division=0)
    recall = recall_score(y_true, y_pred, labels=[0, 1], average=None, zero_division=0)
    return TrainingReport(
        accuracy=float(accuracy_score(y_true, y_pred)),
        dummy_accuracy=dummy_accuracy,
        precision=(float(precision[0]), float(precision[1])),
        recall=(float(recall[0]), float(recall[1])),
        n_test=len(y_true),
        **fields,
    )
