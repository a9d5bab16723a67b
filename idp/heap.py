"""The process's heap after start-up, for the cyclic garbage collector.

A worker process imports and builds everything once (modules, classes, the application, its
routes, the SQLAlchemy metadata, the translations): about 130,000 objects that live as long as
the process. CPython's full (generation 2) collection walks every one of them again, each time
the objects that survived younger collections have grown by a quarter; under load that is a
pause of 60-100 ms in the middle of a request on a small VM, every few thousand requests.
:func:`freeze_startup_objects` moves them out of the collector's reach once the application is
built (``gc.freeze``, the practice the Python documentation describes for pre-fork servers),
so later full collections only walk what requests left behind. Objects that die are still freed
by reference counting; only cycles among the frozen objects would never be reclaimed, and
start-up objects are kept for the process's lifetime anyway.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect what start-up left as garbage, then exempt every surviving object from later
    collections (they are still tracked and freed by reference counting)."""
    gc.collect()
    gc.freeze()
