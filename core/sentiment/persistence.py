"""Saving and loading a classifier: two arrays and a manifest, never a pickle, atomically.

A classifier directory holds `classifier.npz` (coef, intercept; loaded with
`allow_pickle=False`) and `manifest.json` (which encoder and pooling made the features, the
label names, the training report and the npz's sha256). `load_classifier` refuses a classifier
that does not fit the configured features instead of answering nonsense.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from core.errors import InvalidInput, NotReady
from core.i18n import lazy
from core.sentiment.classifier import (
    EncoderInfo,
    SentimentClassifier,
    TrainingReport,
    pair_from_json,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
NPZ_NAME = "classifier.npz"
MANIFEST_NAME = "manifest.json"


def save_classifier(classifier: SentimentClassifier, directory: Path) -> None:
    """Write atomically: a reader sees the old classifier or the new one, never a mix.

    Everything is written and fsynced in a temporary sibling directory, then swapped in with
    two renames (old -> `.<name>.previous`, new -> `<name>`). A crash between those renames
    leaves only the previous copy, which `load` falls back to and the next `save` restores.
    Not safe for two concurrent saves to the same directory; the caller serialises training.
    """
    directory = Path(directory)
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    backup = _backup_path(directory)
    _recover(directory, backup)

    buffer = io.BytesIO()
    np.savez(buffer, coef=classifier.coef, intercept=np.array([classifier.intercept]))
    npz_bytes = buffer.getvalue()
    manifest = {
        "format_version": FORMAT_VERSION,
        "encoder": asdict(classifier.encoder),
        "label_names": list(classifier.label_names),
        "dim": classifier.dim,
        "npz_sha256": hashlib.sha256(npz_bytes).hexdigest(),
        "report": classifier.report.to_json() if classifier.report else None,
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=parent))
    try:
        _write_synced(tmp / NPZ_NAME, npz_bytes)
        manifest_bytes = json.dumps(manifest, indent=2).encode("utf-8")
        _write_synced(tmp / MANIFEST_NAME, manifest_bytes)
        _fsync_dir(tmp)
        replaced = directory.exists()
        if replaced:
            os.rename(directory, backup)
        try:
            os.rename(tmp, directory)
        except BaseException:
            if replaced:
                os.rename(backup, directory)
            raise
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if replaced:
        shutil.rmtree(backup, ignore_errors=True)
    log.info("saved sentiment classifier to %s (%s)", directory, classifier.encoder.describe())


def load_classifier(directory: Path, *, expected: EncoderInfo) -> SentimentClassifier:
    """Load and check a saved classifier; refuse one that does not fit `expected` features."""
    directory = Path(directory)
    if not (directory / MANIFEST_NAME).exists():
        backup = _backup_path(directory)
        if (backup / MANIFEST_NAME).exists() and not directory.exists():
            log.warning(
                "%s is missing; using %s left by an interrupted save", directory, backup
            )
            directory = backup
        else:
            raise NotReady(
                lazy(
                    "No sentiment classifier has been trained yet (nothing at {directory}); "
                    "train one first.",
                    directory=directory)
            )
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text("utf-8"))
        version = manifest["format_version"]
        if version != FORMAT_VERSION:
            raise InvalidInput(
                lazy(
                    "The sentiment classifier at {directory} has format version {version}; "
                    "this bot reads version {FORMAT_VERSION}. Retrain it.",
                    directory=directory, version=version, FORMAT_VERSION=FORMAT_VERSION)
            )
        encoder = EncoderInfo.from_json(manifest["encoder"])
        label_names = pair_from_json(manifest["label_names"], str)
        dim = int(manifest["dim"])
        digest = str(manifest["npz_sha256"])
        report = TrainingReport.from_json(manifest["report"]) if manifest["report"] else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            lazy(
                "The sentiment classifier's manifest at {directory} is unreadable ({error});"
                " retrain it.",
                directory=directory, error=type(exc).__name__)
        ) from None

    if encoder != expected:
        raise InvalidInput(
            lazy(
                "This classifier was trained on {describe}, but the bot is configured for "
                "{describe2}. Retrain it with the configured encoder, or configure the "
                "encoder it was trained on.",
                describe=encoder.describe(), describe2=expected.describe())
        )
    try:
        npz_bytes = (directory / NPZ_NAME).read_bytes()
    except OSError:
        raise InvalidInput(
            lazy(
                "{directory} is missing; retrain the classifier.",
                directory=directory / NPZ_NAME)
        ) from None
    if hashlib.sha256(npz_bytes).hexdigest() != digest:
        raise InvalidInput(
            lazy(
                "{directory} does not match its manifest (changed or corrupted after "
                "training); retrain the classifier.",
                directory=directory / NPZ_NAME)
        )
    try:
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as arrays:
            coef = np.array(arrays["coef"])
            intercept = np.array(arrays["intercept"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InvalidInput(
            lazy(
                "{directory} is unreadable ({error}); retrain it.",
                directory=directory / NPZ_NAME, error=type(exc).__name__)
        ) from None
    if (
        coef.shape != (dim,)
        or intercept.shape != (1,)
        or coef.dtype.kind != "f"
        or intercept.dtype.kind != "f"
        or not np.all(np.isfinite(coef))
        or not np.all(np.isfinite(intercept))
    ):
        raise InvalidInput(
            lazy(
                "{directory} holds arrays of the wrong shape or type (coef {shape}, intercept"
                " {shape2}; expected ({dim},) and (1,)); retrain the classifier.",
                directory=directory / NPZ_NAME, shape=coef.shape, shape2=intercept.shape, dim=dim)
        )
    return SentimentClassifier(encoder, label_names, coef, float(intercept[0]), report)


def _backup_path(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.previous"


def _recover(directory: Path, backup: Path) -> None:
    """Finish or undo a save that crashed between its two renames."""
    if not backup.exists():
        return
    if directory.exists():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        log.warning("restoring %s from an interrupted save", directory)
        os.rename(backup, directory)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
