"""Progress reporting that works in a terminal, in Slicer and in silence.

Long operations take ``progress``: a callable ``progress(done, total, message)`` or None.
The command line passes a tqdm bar; the Slicer module passes a progress dialog.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, TypeVar

ProgressCallback = Callable[[int, int, str], None]
T = TypeVar("T")


def track(items: Sequence[T], progress: Optional[ProgressCallback], message: str) -> Iterator[T]:
    """Yield ``items``, reporting to ``progress`` after each one."""
    total = len(items)
    if progress is None:
        yield from items
        return
    progress(0, total, message)
    for done, item in enumerate(items, 1):
        yield item
        progress(done, total, message)


class TqdmProgress:
    """A ProgressCallback drawing one tqdm bar per message (used by the command line)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bar = None
        self._message = None

    def __call__(self, done: int, total: int, message: str) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self._bar is None or message != self._message:
            self.close()
            self._bar = tqdm(total=total, desc=message, unit="file", leave=False, dynamic_ncols=True)
            self._message = message
        self._bar.n = done
        self._bar.refresh()
        if done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._message = None
