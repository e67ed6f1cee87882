"""`sampling_candidates` keeps what transformers' own logits warpers keep, with the same weights.

`/generate` samples from, and `/nexttoken` draws,
`core.inference.tasks.generate.sampling_candidates`
(temperature -> top-k -> top-p). transformers' `generate()` builds the same chain from
`TemperatureLogitsWarper`, `TopKLogitsWarper` and `TopPLogitsWarper`, applied in that order. On
random logits both must keep the same token set, and the renormalised probabilities of the kept
tokens must agree to 1e-5.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from core.inference.tasks.generate import sampling_candidates

VOCAB = 700  # the tiny GPT-2's vocabulary size
SEEDS = (0, 1, 2, 3, 4)
TEMPERATURES = (0.3, 0.7, 1.0, 1.5)
TOP_KS = (1, 2, 5, 40, 700)
TOP_PS = (0.05, 0.3, 0.9, 0.95, 1.0)


def hf_probabilities(logits: torch.Tensor, temperature: float, top_k: int, top_p: float):
    """transformers' warpers in generate()'s order, then the softmax generate() samples from."""
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:  # generate() only adds TopPLogitsWarper when top_p < 1.0
        warpers.append(TopPLogitsWarper(top_p))
    input_ids = torch.zeros(logits.shape[0], 1, dtype=torch.long)  # unused by these warpers
    return warpers(input_ids, logits.clone()).softmax(dim=-1)


def ours_probabilities(logits: torch.Tensor, temperature: float, top_k: int, top_p: float):
    """Our candidates scattered back over the vocabulary and renormalised."""
    rows = logits.shape[0]
    weights, ids = sampling_candidates(logits, [temperature] * rows, [top_k] * rows, [top_p] * rows)
    full = torch.zeros_like(logits)
    full.scatter_(1, ids, weights)
    return full / full.sum(dim=-1, keepdim=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_sampling_candidates_match_transformers_warpers(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    # Logits of the spread a language model produces: a few strong tokens, a long tail.
    logits = torch.randn(4, VOCAB, generator=generator) * 3.0
    for temperature, top_k, top_p in itertools.product(TEMPERATURES, TOP_KS, TOP_PS):
        theirs = hf_probabilities(logits, temperature, top_k, top_p)
        ours = ours_probabilities(logits, temperature, top_k, top_p)
        label = f"seed={seed} T={temperature} k={top_k} p={top_p}"
        for row in range(logits.shape[0]):
            kept_theirs = set(torch.nonzero(theirs[row] > 0).flatten().tolist())
            kept_ours = set(torch.nonzero(ours[row] > 0).flatten().tolist())
            assert kept_ours == kept_theirs, f"{label} row={row}: kept tokens differ"
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0, msg=label)


def test_mixed_rows_match_transformers_warpers_row_by_row() -> None:
    """One batch with different knobs per row gives each row what its own warpers give."""
    generator = torch.Generator().manual_seed(123)
    logits = torch.randn(5, VOCAB, generator=generator) * 3.0
    knobs = [(0.5, 3, 1.0), (1.0, 50, 0.9), (1.3, 700, 0.5), (0.8, 1, 0.99), (2.0, 200, 0.95)]
    weights, ids = sampling_candidates(
        logits, [t for t, _, _ in knobs], [k for _, k, _ in knobs], [p for _, _, p in knobs]
    )
    for row, (temperature, top_k, top_p) in enumerate(knobs):
        theirs = hf_probabilities(logits[row : row + 1], temperature, top_k, top_p)[0]
        ours = torch.zeros(VOCAB).scatter_(0, ids[row], weights[row])
        ours = ours / ours.sum()
        assert set(torch.nonzero(ours).flatten().tolist()) == set(
            torch.nonzero(theirs).flatten().tolist()
        ), f"row {row}: kept tokens differ"
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0, msg=f"row {row}")
