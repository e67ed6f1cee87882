"""The one lock every model load in the process takes.

`from_pretrained` is not thread-safe: transformers' `no_tie_weights()` swaps
`PreTrainedModel.tie_weights` for a no-op and restores it afterwards, so two overlapping loads
can leave it a no-op for the rest of the process, and every later model keeps its tied weights
(GPT-2's lm_head) on the `meta` device. So loads take turns: the registry's
(`core.inference.models.load_model`), the torch encoder an ONNX model loads on first need
(`core.inference.backends.onnx`), and anything else in the process that loads a model (tests,
benchmarks). Its own module so that the backends need not import the registry's.
"""

from __future__ import annotations

import threading

LOAD_LOCK = threading.Lock()

__all__ = ["LOAD_LOCK"]
