"""The classifier itself: binary logistic regression held as two arrays, and its report.

Predicting needs only numpy; scikit-learn is used to fit (`core.sentiment.training`) and is
folded away by `SentimentClassifier.from_sklearn`. Which features a classifier expects is part
of it (`EncoderInfo`), because a classifier trained on one encoder or pooling is meaningless on
another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Pooling = Literal["cls", "mean"]


@dataclass(frozen=True)
class EncoderInfo:
    """Which features a classifier expects: the same weights *and* the same pooling."""

    model_id: str
    revision: str
    pooling: Pooling

    def describe(self) -> str:
        return f"{self.model_id} (revision {self.revision}) with {self.pooling} pooling"

    @classmethod
    def from_json(cls, data: Any) -> EncoderInfo:
        """Read back `dataclasses.asdict(info)` (raises `ValueError`/`KeyError` if malformed)."""
        pooling = data["pooling"]
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}")
        return cls(model_id=str(data["model_id"]), revision=str(data["revision"]),
                   pooling=pooling)


@dataclass(frozen=True)
class TrainingReport:
    """How well a classifier did on held-out sentences, next to the always-the-majority baseline."""

    accuracy: float
    dummy_accuracy: float
    precision: tuple[float, float]
    recall: tuple[float, float]
    n_train: int
    n_test: int
    label_names: tuple[str, str]
    encoder: EncoderInfo
    seconds: float
    #: Of `seconds`, the time spent computing features (the rest is splitting and fitting).
    featurize_seconds: float = 0.0
    #: Whether features were standardised before fitting (folded into the saved weights).
    standardized: bool = False
    #: The class the baseline always predicts (the training set's majority).
    majority_label: str = ""

    @property
    def beats_baseline(self) -> bool:
        """Better than always answering the majority class on the held-out sentences."""
        return self.accuracy > self.dummy_accuracy

    def baseline_warning(self) -> str:
        return (
            f"this classifier is no better than always answering {self.majority_label!r} "
            f"({self.accuracy:.3f} vs {self.dummy_accuracy:.3f} on {self.n_test} held-out "
            "sentences). It was installed anyway; give more (and more varied) examples, or a "
            "better encoder, and train again."
        )

    def to_text(self) -> str:
        """A small aligned table; Discord callers wrap it in a code block to keep the columns."""
        neg, pos = (name[:20] for name in self.label_names)
        majority = self.majority_label[:20] or "majority"
        model = self.encoder.model_id
        if len(model) > 60:
            model = "..." + model[-57:]
        width = max(len(neg), len(pos), len("classifier"), len(f"always {majority!r}")) + 2
        lines = [
            f"encoder   {model} ({self.encoder.pooling} pooling)",
            f"trained   {self.n_train} sentences, tested on {self.n_test} held out, "
            f"{self.seconds:.1f} s",
            "",
            f"{'':<{width}}accuracy",
            f"{'classifier':<{width}}{self.accuracy:.3f}",
            f"{'always ' + repr(majority):<{width}}{self.dummy_accuracy:.3f}",
            "",
            f"{'label':<{width}}precision  recall",
            f"{neg:<{width}}{self.precision[0]:<11.3f}{self.recall[0]:.3f}",
            f"{pos:<{width}}{self.precision[1]:<11.3f}{self.recall[1]:.3f}",
        ]
        if not self.beats_baseline:
            lines += ["", "WARNING: no better than the baseline: " + self.baseline_warning()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingReport:
        return cls(
            accuracy=float(data["accuracy"]),
            dummy_accuracy=float(data["dummy_accuracy"]),
            precision=pair_from_json(data["precision"], float),
            recall=pair_from_json(data["recall"], float),
            n_train=int(data["n_train"]),
            n_test=int(data["n_test"]),
            label_names=pair_from_json(data["label_names"], str),
            encoder=EncoderInfo.from_json(data["encoder"]),
            seconds=float(data["seconds"]),
            featurize_seconds=float(data.get("featurize_seconds", 0.0)),
            standardized=bool(data.get("standardized", False)),
            majority_label=str(data.get("majority_label", "")),
        )


@dataclass(frozen=True)
class SentimentPrediction:
    label: str
    #: Probability of `label`, the more likely class.
    probability: float
    #: (P(label_names[0]), P(label_names[1])).
    probabilities: tuple[float, float]

class SentimentClassifier:
    """Binary logistic regression held as two arrays, so predicting needs only numpy."""

    def __init__(
        self,
        encoder: EncoderInfo,
        label_names: tuple[str, str],
        coef: np.ndarray,
        intercept: float,
        report: TrainingReport | None = None,
    ) -> None:
        coef = np.asarray(coef, dtype=np.float64)
        if coef.ndim != 1 or coef.size == 0 or not np.all(np.isfinite(coef)):
            raise ValueError(f"coef must be a non-empty finite vector, got shape {coef.shape}")
        if not math.isfinite(float(intercept)):
            raise ValueError("intercept must be finite")
        self.encoder = encoder
        self.label_names = label_names
        self.coef = coef
        self.intercept = float(intercept)
        self.report = report

    @property
    def dim(self) -> int:
        return int(self.coef.shape[0])

    @classmethod
    def from_sklearn(
        cls,
        estimator: Any,
        encoder: EncoderInfo,
        label_names: tuple[str, str],
        report: TrainingReport | None = None,
    ) -> SentimentClassifier:
        """Take a fitted LogisticRegression, or a Pipeline(StandardScaler, LogisticRegression).

        The scaler is folded into the weights (w' = w / scale, b' = b - w' . mean), so standardising
        costs nothing at prediction time and the saved classifier stays two arrays.
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        scaler = None
        model = estimator
        if isinstance(estimator, Pipeline):
            steps = [step for _, step in estimator.steps]
            if len(steps) != 2 or not isinstance(steps[0], StandardScaler):
                raise TypeError("expected Pipeline(StandardScaler, LogisticRegression)")
            scaler, model = steps
        if not isinstance(model, LogisticRegression):
            raise TypeError(f"expected a LogisticRegression, got {type(model).__name__}")
        if list(model.classes_) != [0, 1]:
            raise ValueError(f"expected classes [0, 1], got {list(model.classes_)}")
        coef = np.asarray(model.coef_, dtype=np.float64).reshape(-1)
        intercept = float(np.asarray(model.intercept_).reshape(-1)[0])
        if scaler is not None:
            scale = np.asarray(scaler.scale_, dtype=np.float64)
            mean = np.asarray(scaler.mean_, dtype=np.float64)
            coef = coef / scale
            intercept = intercept - float(coef @ mean)
        return cls(encoder, label_names, coef, intercept, report)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, 2) class probabilities, as sklearn's `predict_proba` would give."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (n, {self.dim}), got {x.shape}")
        z = x @ self.coef + self.intercept
        # Stable sigmoid: exp of a non-positive number never overflows.
        e = np.exp(-np.abs(z))
        p1 = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return np.stack([1.0 - p1, p1], axis=1)

    def predict_features(self, features: np.ndarray) -> list[SentimentPrediction]:
        probs = self.probabilities(features)
        predictions = []
        for p0, p1 in probs.tolist():
            index = 1 if p1 > 0.5 else 0  # sklearn predicts class 1 only when z > 0
            predictions.append(
                SentimentPrediction(
                    label=self.label_names[index],
                    probability=(p0, p1)[index],
                    probabilities=(p0, p1),
                )
            )
        return predictions


def pair_from_json(values: Any, kind: type) -> tuple[Any, Any]:
    """Two JSON scalars as a pair of `kind` (one per class label); `ValueError` otherwise."""
    items = list(values)
    if len(items) != 2 or not all(isinstance(item, (int, float, str)) for item in items):
        raise ValueError(f"expected two values, got {values!r}")
    return kind(items[0]), kind(items[1])
