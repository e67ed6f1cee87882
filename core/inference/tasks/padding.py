"""Forwards over rows of similar length instead of one batch padded to the longest.

Student inputs vary a lot in length (a short /mask sentence beside a long one, QA contexts of
very different sizes), and a padded batch spends its work on padding: split by length, QA, the
sentiment features and /mask all ran faster than as one padded batch, and QA as one padded
batch even ran slower than one by one (benchmarks/RESULTS.md, "Figures behind the code").
Positions a group does not compute stay 0: they are padding, which no task reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


def length_groups(lengths: Sequence[int], *, overhead: int = 64) -> list[list[int]]:
    """Split rows into sub-batches of similar length; each row index appears once.

    Cost model: a padded forward does about `rows x longest` token positions of work plus a
    fixed cost per forward (streaming the weights: roughly 64 positions' worth on the 2-core
    target). Rows sorted by length are cut where another forward is cheaper than the padding it
    saves (an exact minimum, by dynamic programming over the sorted order; n <= a few dozen).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + overhead + (end - start) * longest
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups: list[list[int]] = []
    end = n
    while end > 0:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def length_slices(
    attention_mask: torch.Tensor, padding_side: str
) -> Iterator[tuple[torch.Tensor, slice]]:
    """(row index, column slice) of each sub-batch, trimmed to its own longest row."""
    lengths = attention_mask.sum(-1).tolist()
    for group in length_groups(lengths):
        width = max(lengths[i] for i in group)
        if padding_side == "right":
            cols = slice(0, width)
        else:
            cols = slice(attention_mask.shape[1] - width, None)
        yield torch.tensor(group), cols


def hidden_by_length(
    encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, padding_side: str
) -> torch.Tensor:
    """`last_hidden_state` of a padded batch, computed group by group (padding stays 0)."""
    hidden: torch.Tensor | None = None
    for index, cols in length_slices(attention_mask, padding_side):
        index = index.to(input_ids.device)
        out = encoder(
            input_ids=input_ids[index, cols], attention_mask=attention_mask[index, cols]
        ).last_hidden_state
        if hidden is None:
            hidden = out.new_zeros((*input_ids.shape, out.shape[-1]))
        hidden[index, cols] = out
    assert hidden is not None, "hidden_by_length needs at least one row"
    return hidden
