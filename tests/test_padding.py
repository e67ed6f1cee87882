"""Length grouping: every row is computed exactly once, in a slice wide enough for it."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from core.inference.tasks.padding import length_groups, length_slices


@given(st.lists(st.integers(1, 512), min_size=1, max_size=40))
def test_groups_partition_the_rows_and_keep_lengths_together(lengths):
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    # Groups are contiguous runs of the length order: no row is longer than the next group.
    for a, b in zip(groups, groups[1:]):
        assert max(lengths[i] for i in a) <= min(lengths[i] for i in b)


def test_very_different_lengths_are_split_and_similar_ones_are_not():
    assert len(length_groups([10, 11, 12, 400, 410])) == 2
    assert len(length_groups([30, 31, 32, 33])) == 1


@given(st.lists(st.integers(1, 60), min_size=1, max_size=20), st.sampled_from(["left", "right"]))
def test_slices_cover_each_row_s_tokens(lengths, side):
    width = max(lengths)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        if side == "right":
            mask[row, :n] = 1
        else:
            mask[row, width - n:] = 1
    covered = torch.zeros_like(mask)
    for index, cols in length_slices(mask, side):
        covered[index, cols] += 1
    assert bool(((covered >= mask) & (covered <= 1)).all())
