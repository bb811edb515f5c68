"""Personalized PageRank over the file graph (a small power iteration with numpy)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from context.graph import FileEdges

DAMPING = 0.85
_ITERATIONS = 40
_TOLERANCE = 1e-8


def personalized_pagerank(edges: FileEdges, seeds: Mapping[str, float]) -> dict[str, float]:
    """Rank files; the random walk restarts at ``seeds`` (path -> weight).

    Mass of files without outgoing edges returns to the seeds, so everything stays
    concentrated around the focus rather than leaking uniformly over the repository.
    """
    count = len(edges.paths)
    if count == 0:
        return {}
    index = {path: position for position, path in enumerate(edges.paths)}
    restart = np.zeros(count)
    for path, weight in seeds.items():
        position = index.get(path)
        if position is not None and weight > 0:
            restart[position] += weight
    if restart.sum() == 0:
        restart[:] = 1.0
    restart /= restart.sum()
    sources = np.asarray(edges.sources, dtype=np.int64)
    targets = np.asarray(edges.targets, dtype=np.int64)
    weights = np.asarray(edges.weights, dtype=np.float64)
    out_weight = (
        np.bincount(sources, weights=weights, minlength=count) if len(sources) else np.zeros(count)
    )
    transition = weights / out_weight[sources] if len(sources) else weights
    dangling = out_weight == 0
    rank = restart.copy()
    for _ in range(_ITERATIONS):
        flowed = np.bincount(targets, weights=rank[sources] * transition, minlength=count)
        updated = DAMPING * (flowed + rank[dangling].sum() * restart) + (1 - DAMPING) * restart
        if np.abs(updated - rank).sum() < _TOLERANCE:
            rank = updated
            break
        rank = updated
    return {path: float(rank[position]) for position, path in enumerate(edges.paths)}
