"""Public labelled data the course uses, fetched on demand (never shipped in the repo).

The notebook trains on SST-2 as published in clairett/pytorch-sentiment-classification: a TSV
of `sentence<TAB>label`, which `core.sentiment.load_labelled_data` reads as is.
"""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from core.errors import NotReady
from core.i18n import lazy

log = logging.getLogger(__name__)

SST2_TRAIN_URL = (
    "https://github.com/clairett/pytorch-sentiment-classification/raw/master/data/SST2/train.tsv"
)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tlm-bot" / "data"


def download_sst2(
    directory: Path | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = 30.0,
    url: str = SST2_TRAIN_URL,
) -> Path:
    """The SST-2 training split the notebook used, downloaded once and then reused.

    Written to a temp file and renamed, so an interrupted download never looks complete.
    """
    target = (directory or cache_dir()) / "sst2-train.tsv"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(handle)
    partial = Path(name)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 16):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
        os.replace(partial, target)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise NotReady(
            lazy(
                "Could not download SST-2 ({exc}). On a machine without internet, pass a "
                "local file with --data instead.",
                exc=exc)
        ) from None
    log.info("downloaded SST-2 to %s", target)
    return target
