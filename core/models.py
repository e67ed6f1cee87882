"""The model registry: each (model id, revision) is loaded once and shared by every task using it.

`/mask`, `/tokens` and the sentiment features all name DistilBERT by default; loading it three
times would cost ~250 MB each and three cold starts. So the registry first collects which
*heads* each model needs (masked LM, QA, causal LM), loads one module per head, and serves the
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
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from core import backends
from core.backends.placement import CPU_FLOAT32, Placement
from core.config import ModelSpec
from core.errors import ModelUnavailable

log = logging.getLogger(__name__)

#: `from_pretrained` is not thread-safe: transformers' `no_tie_weights()` swaps
#: `PreTrainedModel.tie_weights` for a no-op and restores it afterwards, so two overlapping loads
#: can leave it a no-op for the rest of the process, and every later model keeps its tied
#: weights (GPT-2's lm_head) on the `meta` device. So loads take turns, and anything else in
#: the process that loads a model (tests, benchmarks) takes this lock too.
LOAD_LOCK = threading.Lock()


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
    _tokenizer_view: LoadedModel | None = field(default=None, repr=False, compare=False)

    def with_own_tokenizer(self) -> LoadedModel:
        """The same modules with a private copy of the tokenizer (made once, then reused)."""
        if self._tokenizer_view is None:
            self._tokenizer_view = LoadedModel(
                self.spec, copy.deepcopy(self.tokenizer), self.modules, self.load_seconds,
                self.device,
            )
        return self._tokenizer_view

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


def load_model(spec: ModelSpec, heads: frozenset[Head],
               placement: Placement = CPU_FLOAT32) -> LoadedModel:
    """Load a tokenizer and one module per head, blocking. Runs in a worker thread.

    `trust_remote_code` is pinned off: a model id typed into a config must never run code.
    """
    import transformers

    with LOAD_LOCK:
        return _load_model_locked(transformers, spec, heads, placement)


def _load_model_locked(transformers: Any, spec: ModelSpec, heads: frozenset[Head],
                       placement: Placement) -> LoadedModel:
    started = time.perf_counter()
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        spec.id, revision=spec.revision, trust_remote_code=False
    )
    wanted = set(heads) - {Head.TOKENIZER}
    if wanted - {Head.ENCODER}:
        wanted.discard(Head.ENCODER)  # served from another head's base_model
    modules: dict[Head, Any] = {}
    for head in sorted(wanted, key=lambda h: h.value):
        auto = getattr(transformers, _AUTO_CLASSES[head])
        module = auto.from_pretrained(spec.id, revision=spec.revision, trust_remote_code=False)
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
    if Head.CAUSAL_LM in modules and tokenizer.pad_token is None:
        # GPT-2 ships without a pad token; batching needs one and EOS is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec, tokenizer, modules, time.perf_counter() - started, placement.device)


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
            reason = _load_failure_reason(spec, exc)
            log.error("could not load %s: %s", spec, reason, exc_info=exc)
            self._state[spec] = LoadState.FAILED
            self._errors[spec] = reason
            raise ModelUnavailable(f"The model `{spec}` could not be loaded: {reason}") from exc
        self._state[spec] = LoadState.READY
        # Hundreds of thousands of long-lived objects now exist; a full collection walking them
        # stalled the event loop ~200 ms (benchmarks). Frozen, collections skip them.
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


def _load_failure_reason(spec: ModelSpec, exc: Exception) -> str:
    """One line a moderator can act on; the traceback goes to the log."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "offline" in text.lower() or "connect" in text.lower():
        return f"it is not in the local cache and the hub cannot be reached ({text[:200]})"
    return text[:300]
