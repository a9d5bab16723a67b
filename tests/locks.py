"""Testing that a change waits for a concurrent one (row locks, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")


def waits_for(
    holder: Session, action: Callable[[], T], meanwhile: Callable[[], None] | None = None
) -> T:
    """Run ``action`` in a thread while ``holder`` keeps a change uncommitted: the action must
    wait for it (it is still running after 1.5 s). Then do ``meanwhile`` (more of the
    concurrent change), commit and close ``holder``, and return what the action returned
    (or raise what it raised)."""
    returned: list[T] = []
    raised: list[BaseException] = []

    def run() -> None:
        try:
            returned.append(action())
        except BaseException as exc:  # re-raised in the test's thread
            raised.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=1.5)
    try:
        assert worker.is_alive(), "it did not wait for the concurrent change"
        if meanwhile is not None:
            meanwhile()
    finally:
        holder.commit()
        holder.close()
    worker.join(timeout=30)
    assert not worker.is_alive(), "it did not finish after the concurrent change"
    if raised:
        raise raised[0]
    return returned[0]
