"""The common prefix and suffix of two texts: the one edit between two versions of a document."""

from __future__ import annotations

from typing import AnyStr

# Compare in ever smaller chunks: documents are long and edits small, and a character-by-character
# loop over a long common part costs a millisecond per keystroke in Python.
_STEPS = (4096, 512, 64, 8, 1)


def common_affixes(old: AnyStr, new: AnyStr) -> tuple[int, int]:
    """Lengths of the longest common prefix and of the longest common suffix of ``old`` and
    ``new`` (str or bytes), the suffix not overlapping the prefix in either text.

    ``old[prefix:len(old) - suffix]`` is what was replaced by ``new[prefix:len(new) - suffix]``.
    """
    limit = min(len(old), len(new))
    prefix = 0
    for step in _STEPS:
        while prefix + step <= limit and old[prefix : prefix + step] == new[prefix : prefix + step]:
            prefix += step
    limit -= prefix
    suffix = 0
    old_end, new_end = len(old), len(new)
    for step in _STEPS:
        while (
            suffix + step <= limit
            and old[old_end - suffix - step : old_end - suffix]
            == new[new_end - suffix - step : new_end - suffix]
        ):
            suffix += step
    return prefix, suffix
