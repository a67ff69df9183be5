"""Handing the memory the process has freed back to the system.

glibc's allocator keeps what a process frees, to serve its next allocations from it. Loading
frees the checkpoint's tensors once converted, and the threads that lay the weights out free
their copies in heaps of their own that no other thread reuses (35 MiB of base's idle
process). A transcription frees a lot, window after window: the encoder's activations (3-12 MB
each for base), the keys' temporaries, a decoding's key/value caches (~65 MB with 5 beams). The
freed chunks stay resident as holes between the ones still in use, and once glibc has seen
large blocks freed it keeps up to 64 MiB free at the heap's top as well: at the peak of a
float32 transcription of the bench file with base, ~110 MiB were free but resident.

`release_freed_memory` asks glibc (`malloc_trim`) for every whole free page back, inside the
heaps as well as at their tops. It is called where a phase has just freed its working memory:
once a model is loaded, before a window is encoded (what the last decoding freed) and once a
decoding's caches are built (what the encoder and building them freed). On that run the peak
went from 616-621 to 569-573 MiB (alternating runs, the same transcript), for ~6 ms a call
(14 calls) and the page faults of touching the memory given back again. Elsewhere than glibc
it does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):  # not glibc
        return None


def release_freed_memory() -> None:
    """Give the whole pages of the memory freed so far back to the system, where the C
    library can (glibc); every thread's heap."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
