"""The live sentiment classifier: predict with it, retrain it, swap it safely.

Reading data, training and persistence live beside it in `core.sentiment`; this module holds
the one classifier the bot answers with. A new classifier replaces the live one only after it
trained *and* saved successfully, so a failed or half-finished training never leaves students
without answers, and only one training runs at a time because each one floods the encoder's
queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass

import numpy as np

from core.config import Config
from core.errors import CoreError, InvalidInput, NotReady
from core.i18n import lazy
from core.inference.engine import InferenceEngine
from core.inference.tasks.base import Timings
from core.inference.tasks.explain import ExplainResult, ExplainSentimentRequest
from core.inference.tasks.features import FeaturesRequest, FeaturesResult
from core.sentiment.classifier import EncoderInfo, SentimentClassifier, TrainingReport
from core.sentiment.data import LabelledData
from core.sentiment.persistence import load_classifier, save_classifier
from core.sentiment.training import train_classifier

log = logging.getLogger(__name__)

TRAINING_HINT = (
    "An instructor can train one with `/classifier train` (a CSV with `text` and `label` "
    "columns), or on the server with `tlm-bot train-sentiment --data FILE`."
)
HOW_TO_TRAIN = "No sentiment classifier has been trained yet. " + TRAINING_HINT


@dataclass(frozen=True)
class SentimentResult:
    model_id: str
    text: str
    label: str
    probability: float
    label_names: tuple[str, str]
    probabilities: tuple[float, float]
    #: Held-out accuracy of the classifier that answered, if it was measured.
    accuracy: float | None
    timings: Timings | None = None


class SentimentService:
    def __init__(self, engine: InferenceEngine, config: Config) -> None:
        spec = config.models.features
        self.engine = engine
        self.encoder = EncoderInfo(spec.id, spec.revision, config.sentiment.pooling)
        self.directory = config.resolve_path(config.sentiment.classifier_dir)
        self._classifier: SentimentClassifier | None = None
        self._problem: str = HOW_TO_TRAIN
        self._training = asyncio.Lock()

    def load(self) -> None:
        """Pick up the classifier on disk, if there is a compatible one."""
        try:
            self._classifier = load_classifier(self.directory, expected=self.encoder)
        except CoreError as exc:
            self._classifier = None
            missing = not (self.directory / "manifest.json").exists()
            # Not HOW_TO_TRAIN: a classifier that exists but does not fit *was* trained.
            self._problem = HOW_TO_TRAIN if missing else f"{exc.message} {TRAINING_HINT}"
            if not missing:
                log.warning("sentiment classifier not loaded: %s", exc.message)

    @property
    def classifier(self) -> SentimentClassifier | None:
        return self._classifier

    @property
    def problem(self) -> str:
        """Why there is no live classifier, and what to do about it."""
        return self._problem

    @property
    def training(self) -> bool:
        return self._training.locked()

    def require(self) -> SentimentClassifier:
        if self._classifier is None:
            raise NotReady(self._problem)
        return self._classifier

    def admit(self, text: str) -> Awaitable[SentimentResult]:
        """Check and queue now (raising `NotReady`, `Overloaded`... at once), answer later."""
        classifier = self.require()
        features = self.engine.admit(FeaturesRequest(text, self.encoder.pooling))
        return self._classify(classifier, text, features)

    async def predict(self, text: str) -> SentimentResult:
        return await self.admit(text)

    def explain_request(self, text: str) -> ExplainSentimentRequest:
        """`/explain sentiment` of `text`: the live classifier travels with the request, so the
        explanation is of the weights that answered (a retraining meanwhile changes nothing)."""
        classifier = self.require()
        return ExplainSentimentRequest(
            text, tuple(classifier.coef.tolist()), classifier.intercept,
            tuple(classifier.label_names), self.encoder.pooling)

    def admit_explain(self, text: str) -> Awaitable[ExplainResult]:
        """Check and queue an explanation now (as `admit`), answer later."""
        return self.engine.admit(self.explain_request(text))

    async def _classify(self, classifier: SentimentClassifier, text: str,
                        pending: Awaitable[FeaturesResult]) -> SentimentResult:
        features = await pending
        prediction = classifier.predict_features(features.vector[None, :])[0]
        report = classifier.report
        return SentimentResult(
            model_id=features.model_id,
            text=text,
            label=prediction.label,
            probability=prediction.probability,
            label_names=tuple(classifier.label_names),
            probabilities=prediction.probabilities,
            accuracy=report.accuracy if report is not None else None,
            timings=features.timings,
        )

    async def featurize(self, texts: Sequence[str]) -> np.ndarray:
        """Many texts through the engine at once, so its batcher packs them together."""
        # Training data may hold texts longer than a student may type; the encoder truncates
        # to its window anyway, so cut them here instead of failing the whole training.
        limit = self.engine.config.limits.max_text_chars
        results = await asyncio.gather(
            *(self.engine.submit(FeaturesRequest(t[:limit], self.encoder.pooling)) for t in texts)
        )
        return np.stack([r.vector for r in results])

    async def train(self, data: LabelledData) -> TrainingReport:
        """Train, save atomically, then swap the live classifier. One training at a time."""
        if self._training.locked():
            raise InvalidInput(lazy(
                "A classifier is already training. Wait for its report first."))
        async with self._training:
            classifier, report = await train_classifier(data, self.featurize, self.encoder)
            await asyncio.to_thread(save_classifier, classifier, self.directory)
            self._classifier = classifier
            log.info("new sentiment classifier: accuracy %.3f on %d held-out examples",
                     report.accuracy, report.n_test)
            if not report.beats_baseline:
                log.warning("sentiment classifier installed: %s", report.baseline_warning())
            return report
