"""The output buffers of a plan's steps (qcc.runtime.executor), planned once per input
shapes: each step that writes into a buffer (`takes_out`) gets a view of one block of
memory, and blocks are shared by values that do not live at the same time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from qcc.runtime import blocked, kernels


def plan_buffers(steps: Sequence[Any], output_slots: Sequence[int],
                 sizes: dict[int, tuple[int, ...]]) -> list[np.ndarray | None]:
    """The output buffer of each step that writes into one, shared between steps
    whose values do not live at the same time.

    A value may be a view of another (reshape, transpose, identity, ...): every
    result of a step that is not `fresh` is taken to view each of its arguments'
    buffers, so a buffer is free only once every value that may view it is dead.
    A buffer a plan output may view is never preallocated (the caller keeps it)."""
    roots: dict[int, frozenset[int]] = {}  # slot -> steps whose buffers it may view
    last: dict[int, int] = {}  # buffer (its step) -> last step using a view of it
    for i, step in enumerate(steps):
        if step.fresh:
            views = [frozenset([i]) if step.takes_out else frozenset()] * len(step.results)
        else:
            shared = frozenset().union(*(roots.get(a, frozenset()) for a in step.args))
            views = [shared] * len(step.results)
        for a in step.args:
            for b in roots.get(a, ()):
                last[b] = i
        for r, v in zip(step.results, views, strict=True):
            roots[r] = v
            for b in v:
                last[b] = max(last.get(b, i), i)
    escaped = frozenset().union(*(roots.get(s, frozenset()) for s in output_slots))
    # Blocks of memory, each shared by values that do not live at the same time
    # whatever their shapes (a value takes the smallest free block that holds it,
    # else the largest free one, grown): fewer bytes touched per run, so more of
    # the activations stay in cache.
    sizes_of: list[int] = []  # block -> elements
    free: list[int] = []  # blocks
    releases: dict[int, list[int]] = {}
    placed: list[tuple[int, tuple[int, ...]] | None] = [None] * len(steps)
    for i, step in enumerate(steps):
        if (step.takes_out and i not in escaped and (len(step.results) == 1 or step.tee)
                and all(d >= 0 for d in sizes[step.results[0]])):
            # a `?` left by a run-time shape op (qnn.range, ...): sized when it runs
            shape = sizes[step.results[0]]
            if step.blocked:
                shape = blocked.blocked_shape(shape)
            if step.tee:
                shape = (2, *shape)
            n = max(1, math.prod(shape))
            fits = [b for b in free if sizes_of[b] >= n]
            if fits:
                block = min(fits, key=lambda b: sizes_of[b])
            elif free:
                block = max(free, key=lambda b: sizes_of[b])
                sizes_of[block] = n
            else:
                block = len(sizes_of)
                sizes_of.append(n)
            if block in free:
                free.remove(block)
            placed[i] = (block, shape)
            releases.setdefault(last.get(i, i), []).append(block)
        free.extend(releases.pop(i, ()))
    memory = [kernels.aligned(n) for n in sizes_of]
    buffers: list[np.ndarray | None] = [
        None if p is None else memory[p[0]][:math.prod(p[1])].reshape(p[1]) for p in placed]
    return buffers
