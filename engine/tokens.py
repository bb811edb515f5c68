"""Token sequences: the memo of segment tokenizations and the common prefix of two sequences."""

from __future__ import annotations

import threading
from array import array
from collections import OrderedDict

import numpy as np

from engine.host import LoadedModel


class TokenMemo:
    """Segment text -> tokens, LRU, shared by the lanes. Keyed by the text itself: a dict lookup
    hashes it once per string object (CPython caches str hashes) and compares only on a hash
    hit."""

    def __init__(self, model: LoadedModel, entries: int) -> None:
        self._model = model
        self._entries = entries
        self._memo: OrderedDict[str, array[int]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def tokens(self, text: str) -> array[int]:
        with self._lock:
            found = self._memo.get(text)
            if found is not None:
                self._memo.move_to_end(text)
                self.hits += 1
                return found
        tokens = self._model.tokenize(text)
        with self._lock:
            self.misses += 1
            self._memo[text] = tokens
            while len(self._memo) > self._entries:
                self._memo.popitem(last=False)
        return tokens


def common_prefix_len(a: array[int], b: array[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    left = np.frombuffer(a, dtype=np.int32, count=n)
    right = np.frombuffer(b, dtype=np.int32, count=n)
    diff = np.flatnonzero(left != right)
    return int(diff[0]) if diff.size else n
