"""The model registry: each (model id, revision) is loaded once and shared by every task using it.

`/mask`, `/tokens` and the sentiment features all name DistilBERT by default; loading it three
times would cost three times its memory and three cold starts. So the registry first collects
which *heads* each model needs (masked LM, QA, causal LM), loads one module per head, and serves the
bare encoder as that module's `base_model` instead of a second copy.

Loading runs in a background thread so the bot can acknowledge commands while weights arrive;
callers await `ModelRegistry.get`, which waits for a load in progress instead of failing.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import ModelSpec
from core.errors import ModelUnavailable
from core.i18n import lazy
from core.inference import backends
from core.inference.backends.placement import CPU_FLOAT32, Placement
from core.inference.load_lock import LOAD_LOCK

log = logging.getLogger(__name__)


class Head(enum.Enum):
    """What a task needs from a model. ENCODER and TOKENIZER ride on any other head."""

    MASKED_LM = "masked-lm"
    QA = "question-answering"
    CAUSAL_LM = "causal-lm"
    ENCODER = "encoder"
    TOKENIZER = "tokenizer"


_AUTO_CLASSES = {
    Head.MASKED_LM: "AutoModelForMaskedLM",
    Head.QA: "AutoModelForQuestionAnswering",
    Head.CAUSAL_LM: "AutoModelForCausalLM",
    Head.ENCODER: "AutoModel",
}


class LoadState(enum.Enum):
    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass
class LoadedModel:
    """A tokenizer and the modules loaded for one model spec."""

    spec: ModelSpec
    tokenizer: Any
    modules: dict[Head, Any] = field(default_factory=dict)
    load_seconds: float = 0.0
    #: Where the modules' inputs must be built (`engine.device`, resolved).
    device: str = "cpu"
    _tokenizer_views: dict[str, LoadedModel] = field(default_factory=dict, repr=False,
                                                     compare=False)

    def with_own_tokenizer(self, owner: str = "") -> LoadedModel:
        """The same modules with a private copy of the tokenizer for `owner` (a lane beside
        the model's: `/tokens`, each `/explain`), made once, then reused: two lanes running at
        once must not share one either."""
        if owner not in self._tokenizer_views:
            self._tokenizer_views[owner] = LoadedModel(
                self.spec, copy.deepcopy(self.tokenizer), self.modules, self.load_seconds,
                self.device,
            )
        return self._tokenizer_views[owner]

    def module(self, head: Head) -> Any:
        if head in self.modules:
            return self.modules[head]
        if head is Head.ENCODER:
            # Any head model carries the encoder it was built on: share it, never reload it.
            for module in self.modules.values():
                return module.base_model
        raise KeyError(f"{self.spec} was not loaded with a {head.value} head")

    @property
    def max_length(self) -> int:
        """The longest input the model accepts, in tokens (tokenizers often say 1e30)."""
        limits = [int(self.tokenizer.model_max_length)]
        for module in self.modules.values():
            config = module.config
            for name in ("max_position_embeddings", "n_positions"):
                value = getattr(config, name, None)
                if isinstance(value, int):
                    limits.append(value)
        return min(limits)


#: What to choose instead, per head, when a model lacks it.
_HEAD_ADVICE = {
    Head.MASKED_LM: ("masked-LM",
                     "choose a fill-mask model (e.g. distilbert/distilbert-base-cased)"),
    Head.QA: ("question-answering", "choose a model fine-tuned for extractive QA (e.g. "
              "distilbert/distilbert-base-cased-distilled-squad)"),
    Head.CAUSAL_LM: ("causal-LM", "choose a text-generation model (e.g. openai-community/gpt2)"),
    Head.ENCODER: ("encoder",
                   "choose a transformer encoder (e.g. distilbert/distilbert-base-cased)"),
}
#: What a user can do when a hub model is not on this machine.
FIX_MISSING = (
    "Run `tlm-bot download-models` while online (then set HF_HUB_OFFLINE=1 to stay offline), "
    "or point [models] at local folders."
)
#: Seconds to wait for the hub before calling it unreachable (a reachable hub answers well
#: within it: benchmarks/RESULTS.md, "Figures behind the code").
HUB_PROBE_TIMEOUT_S = 3.0


class ModelRefused(Exception):
    """A model cannot serve a role, for a reason a user can act on (one line, no traceback)."""


def looks_local(model_id: str) -> bool:
    """A path rather than a hub id ("org/name" or "name"): written as a path, or present."""
    return (model_id.startswith(("/", "./", "../", "~", ".\\")) or model_id.count("/") >= 2
            or Path(model_id).expanduser().exists())


def load_model(spec: ModelSpec, heads: frozenset[Head],
               placement: Placement = CPU_FLOAT32) -> LoadedModel:
    """Load a tokenizer and one module per head, blocking. Runs in a worker thread.

    `trust_remote_code` is pinned off: a model id typed into a config must never run code.
    A hub model is first looked for in the local cache only (no network, no update check);
    only if it is missing there is the hub asked, after a short reachability probe, so an
    offline machine fails in seconds with what to do instead of a long series of retries.
    """
    local_only = where_to_load(spec)  # before importing transformers: that alone takes seconds
    import torch
    import transformers

    # One core: a loading thread that used more would keep OpenMP helper threads for life, and
    # past one helper per core every forward in the process slows (`WorkerThreads`).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with LOAD_LOCK:
            loaded = _load_model_locked(transformers, spec, heads, local_only, placement)
    finally:
        torch.set_num_threads(threads)
    # What a fast path replaced (float32 Linear layers, in reference cycles) must be collected
    # now: the registry then freezes every live object out of the collector's reach, and a
    # frozen float Linear would stay in memory beside the int8 one (its weights' pages read
    # back in by whatever touches them). Here, in the loading thread, while few objects are
    # unfrozen.
    gc.collect()
    return loaded


def _load_model_locked(transformers: Any, spec: ModelSpec, heads: frozenset[Head],
                       local_only: bool, placement: Placement) -> LoadedModel:
    started = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        spec.id, revision=spec.revision, trust_remote_code=False, local_files_only=local_only
    )
    wanted = set(heads) - {Head.TOKENIZER}
    if wanted - {Head.ENCODER}:
        wanted.discard(Head.ENCODER)  # served from another head's base_model
    modules: dict[Head, Any] = {}
    for head in sorted(wanted, key=lambda h: h.value):
        module = _load_head(transformers, spec, head, local_only)
        if any(p.is_meta for p in module.parameters()):
            # transformers' `no_tie_weights` patches PreTrainedModel.tie_weights globally and is
            # not thread-safe: one from_pretrained racing another (outside this lock) can leave
            # tying disabled for the whole process, and tied heads then stay on `meta`. Refuse
            # loudly instead of serving a model that fails on every request.
            raise RuntimeError(
                f"{type(module).__name__} has weights left on the meta device (tied weights "
                "were not tied; was a model loaded concurrently outside the registry?)"
            )
        module.eval()
        module.requires_grad_(False)
        modules[head] = backends.prepare(module, spec, placement, label=f"{spec} ({head.value})")
    if Head.MASKED_LM in modules and tokenizer.mask_token is None:
        raise ModelRefused(f"its tokenizer has no mask token: {_HEAD_ADVICE[Head.MASKED_LM][1]}.")
    if Head.CAUSAL_LM in modules and tokenizer.pad_token is None:
        # GPT-2 ships without a pad token; batching needs one and EOS is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec, tokenizer, modules, time.perf_counter() - started, placement.device)


def where_to_load(spec: ModelSpec) -> bool:
    """True to load from local files only; raises `ModelRefused` when the model cannot be had."""
    if looks_local(spec.id):
        if not Path(spec.id).expanduser().is_dir():
            raise ModelRefused(f"the local folder {spec.id} does not exist (relative paths are "
                               "read from the config file's folder)")
        return True
    if _cached(spec):
        return True
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ModelRefused("it is not in the local cache and HF_HUB_OFFLINE=1 forbids "
                           f"downloading it. {FIX_MISSING}")
    unreachable = _hub_unreachable(constants.ENDPOINT)
    if unreachable:
        raise ModelRefused(f"it is not in the local cache and the hub "
                           f"({constants.ENDPOINT}) cannot be reached: {unreachable}. "
                           f"{FIX_MISSING}")
    return False


def _cached(spec: ModelSpec) -> bool:
    """The model's config is in the Hugging Face cache (downloads fetch config and weights)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(spec.id, "config.json", revision=spec.revision)
    except Exception:  # noqa: BLE001 - an odd id or cache: let the normal load report it
        log.debug("cache lookup for %s failed", spec, exc_info=True)
        return False
    return isinstance(found, str)


def _hub_unreachable(endpoint: str) -> str | None:
    """Why the hub cannot be reached, or None if it answers (any HTTP status will do)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(endpoint.rstrip("/") + "/api/models?limit=1", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=HUB_PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections, bad URLs
        reason = getattr(exc, "reason", exc)
        return str(reason) or type(exc).__name__


def _load_head(transformers: Any, spec: ModelSpec, head: Head, local_only: bool) -> Any:
    """One head module; refused in one line when the checkpoint has no weights for that head.

    `from_pretrained` happily builds a head the checkpoint lacks with random weights (a QA
    checkpoint as a masked LM answers with random scores), so weights missing outside the base
    model mean the model cannot do this job.
    """
    auto = getattr(transformers, _AUTO_CLASSES[head])
    what, advice = _HEAD_ADVICE[head]
    try:
        module, info = auto.from_pretrained(
            spec.id, revision=spec.revision, trust_remote_code=False,
            local_files_only=local_only, output_loading_info=True,
        )
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):  # it lists ~200 classes: not for users
            kind = str(exc).split("configuration_", 1)[-1].split(".", 1)[0] or "this"
            raise ModelRefused(f"it is a {kind} model, with no {what} head: {advice}") from None
        raise
    if any(p.is_meta for p in module.parameters()):
        return module  # untied weights: reported by the caller, not as a missing head
    prefix = f"{module.base_model_prefix}."
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(prefix)]
    if missing and head is not Head.ENCODER:
        log.debug("%s: weights missing for the %s head: %s", spec, what, sorted(missing))
        raise ModelRefused(f"it has no {what} head: {advice}")
    return module


class ModelRegistry:
    """Owns every model's load state; `get` waits for a load in progress."""

    def __init__(self, needs: dict[ModelSpec, set[Head]],
                 placement: Placement = CPU_FLOAT32) -> None:
        self.placement = placement
        self._heads = {spec: frozenset(heads) for spec, heads in needs.items()}
        self._state = {spec: LoadState.PENDING for spec in self._heads}
        self._errors: dict[ModelSpec, str] = {}
        self._loads: dict[ModelSpec, asyncio.Future[LoadedModel]] = {}
        self._one_at_a_time = asyncio.Lock()
        self._in_flight: asyncio.Future[LoadedModel] | None = None

    @property
    def specs(self) -> list[ModelSpec]:
        return list(self._heads)

    def state(self, spec: ModelSpec) -> LoadState:
        return self._state[spec]

    def error(self, spec: ModelSpec) -> str | None:
        return self._errors.get(spec)

    def start_all(self) -> None:
        """Begin loading every model in the background (one after another, see `_load`)."""
        for spec in self._heads:
            self._start(spec)

    async def get(self, spec: ModelSpec) -> LoadedModel:
        return await asyncio.shield(self._start(spec))

    def _start(self, spec: ModelSpec) -> asyncio.Future[LoadedModel]:
        if spec not in self._loads:
            self._loads[spec] = asyncio.ensure_future(self._load(spec))
        return self._loads[spec]

    async def _load(self, spec: ModelSpec) -> LoadedModel:
        async with self._one_at_a_time:  # see LOAD_LOCK; also: no thread starts after aclose
            return await self._load_now(spec)

    async def _load_now(self, spec: ModelSpec) -> LoadedModel:
        self._state[spec] = LoadState.LOADING
        log.info("loading %s (%s)", spec, ", ".join(sorted(h.value for h in self._heads[spec])))
        try:
            # Shielded: cancelling a waiter must not orphan the thread; aclose waits for it.
            self._in_flight = asyncio.ensure_future(
                asyncio.to_thread(load_model, spec, self._heads[spec], self.placement)
            )
            # Its error is reported through `loaded` below; mark it seen even if nobody waits.
            self._in_flight.add_done_callback(lambda f: f.cancelled() or f.exception())
            loaded = await asyncio.shield(self._in_flight)
        except Exception as exc:  # any failure is reported as unavailable; the bot lives on
            reason = failure_reason(exc)
            # One line for the operator; the traceback only with -v (DEBUG): no traceback for a
            # missing download or a wrong model, which are the usual causes.
            log.error("could not load %s: %s", spec, reason)
            log.debug("loading %s failed", spec, exc_info=exc)
            self._state[spec] = LoadState.FAILED
            self._errors[spec] = reason
            raise ModelUnavailable(lazy("The model `{model}` could not be loaded: {reason}",
                                        model=str(spec), reason=reason)) from exc
        self._state[spec] = LoadState.READY
        # Hundreds of thousands of long-lived objects now exist; a full collection walking them
        # stalled the event loop (benchmarks/RESULTS.md, "Figures behind the code"). Frozen,
        # collections skip them.
        gc.freeze()
        log.info("loaded %s in %.1fs", spec, loaded.load_seconds)
        return loaded

    async def aclose(self, timeout: float = 60.0) -> None:
        """Cancel loads not yet started; wait (bounded) for the one a thread is running."""
        for load in self._loads.values():
            if not load.done():
                load.cancel()
        await asyncio.gather(*self._loads.values(), return_exceptions=True)
        if self._in_flight is not None and not self._in_flight.done():
            log.info("waiting for a model load to finish before shutting down")
            await asyncio.wait([self._in_flight], timeout=timeout)


def failure_reason(exc: Exception) -> str:
    """One line a moderator can act on; the traceback goes to the log."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ModelRefused):
        return text
    if "offline" in text.lower() or "connect" in text.lower():
        return (f"it is not in the local cache and the hub cannot be reached ({text[:200]}). "
                f"{FIX_MISSING}")
    return text[:300]
