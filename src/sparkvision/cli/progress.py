"""What a long run shows on the terminal: a one-line progress bar, and the closing summary.

The bar lives on stderr's last line and is redrawn in place (``\\r``). When results go to the same
terminal (the default table), each finished line of output is written while the bar is cleared and
the bar is drawn again below it (:class:`BarAwareStream`), so rows and bar never share a line. When
the number of images is known up front (:func:`count_images` — listing the folders is cheap next to
decoding), the bar shows ``done/total``, percentage, rate, ETA and the failed count.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from .. import Prediction

__all__ = ["BarAwareStream", "ProgressBar", "Tally", "count_images", "plural", "summary_line", "tally"]


def plural(count: int, noun: str) -> str:
    """``"1 image"``, ``"2 images"``, ``"0 images"`` (``"classes"`` for nouns ending in s)."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith("s") else f"{count} {noun}s"


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar:
    """A one-line progress display on ``stream`` (a terminal), redrawn at most every ``interval`` s.

    ``advance(failed=...)`` after each image; ``close()`` erases the line. With ``total`` it shows
    ``12/240 images 5% |██      | 31.0 img/s ETA 0:07 · 1 failed``; without, the count and rate.
    """

    def __init__(
        self,
        stream: IO[str],
        *,
        total: int | None,
        desc: str,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self.stream = stream
        self.total = total
        self.desc = desc
        self.done = 0
        self.failed = 0
        self._interval = interval
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._shown = 0  # characters of the bar now on the line
        self._width = width

    def text(self) -> str:
        """The bar's current line (without the carriage return)."""
        elapsed = self._clock() - self._started
        rate = self.done / elapsed if self.done and elapsed > 0 else None
        speed = f"{rate:.1f} img/s" if rate is not None else "– img/s"
        width = (self._width or shutil.get_terminal_size((80, 24)).columns) - 1
        if self.total is None:
            line = f"{self.desc}: {plural(self.done, 'image')} · {speed} · {self.failed} failed"
            return line[:width]
        left = max(self.total - self.done, 0)
        eta = _hms(left / rate) if rate else "?"
        share = self.done / self.total if self.total else 1.0
        head = f"{self.desc}: {self.done}/{plural(self.total, 'image')} {share:4.0%} "
        tail = f" {speed} · ETA {eta} · {self.failed} failed"
        room = width - len(head) - len(tail) - 2
        if room >= 10:
            room = min(room, 30)
            filled = int(share * room)
            return f"{head}|{'█' * filled}{' ' * (room - filled)}|{tail}"
        return (head.rstrip() + tail)[:width]

    def draw(self) -> None:
        line = self.text()
        pad = max(self._shown - len(line), 0)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._shown = len(line) + pad
        self._last_draw = self._clock()

    def clear(self) -> None:
        """Erase the bar (the cursor ends at the start of the empty line)."""
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self.stream.flush()
            self._shown = 0

    def advance(self, count: int = 1, *, failed: int = 0) -> None:
        self.done += count
        self.failed += failed
        finished = self.total is not None and self.done >= self.total
        if finished or self._clock() - self._last_draw >= self._interval:
            self.draw()

    def close(self) -> None:
        self.clear()


class BarAwareStream:
    """A text stream for output sharing the terminal with a :class:`ProgressBar`: whole lines are
    written with the bar cleared, then the bar is drawn again beneath them."""

    def __init__(self, stream: IO[str], bar: ProgressBar) -> None:
        self._stream = stream
        self._bar = bar
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = self._pending.rfind("\n") + 1
        if cut:
            self._bar.clear()
            self._stream.write(self._pending[:cut])
            self._stream.flush()
            self._pending = self._pending[cut:]
            self._bar.draw()
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._bar.clear()
            self._stream.write(self._pending)
            self._pending = ""
        self._stream.flush()


def count_images(paths: Sequence[str], *, recursive: bool) -> int:
    """How many results ``paths`` will give: every file named, every image file in the folders.

    Raises :class:`~sparkvision.errors.InputNotFoundError` for a folder holding no image files.
    """
    from ..images import iter_image_files

    return sum(1 for _ in iter_image_files(list(paths), recursive=recursive))


def check_folders(paths: Sequence[str], *, recursive: bool) -> None:
    """Fail before any work on a folder that holds no image files (a file named explicitly always
    gets a result row, even one that does not exist)."""
    from pathlib import Path

    from ..images import iter_image_files

    for raw in paths:
        if Path(raw).is_dir():
            next(iter(iter_image_files([raw], recursive=recursive)))  # raises when there are none


@dataclass
class Tally:
    """What a run did: results written, of which failed, and the seconds it took."""

    done: int = 0
    failed: int = 0
    seconds: float = 0.0


def tally(
    predictions: Iterable[Prediction], counts: Tally, bar: ProgressBar | None = None
) -> Iterator[Prediction]:
    """Pass ``predictions`` through, counting them into ``counts`` and advancing ``bar``."""
    started = time.perf_counter()
    try:
        for prediction in predictions:
            bad = prediction.error is not None
            counts.done += 1
            counts.failed += bad
            if bar is not None:
                bar.advance(failed=int(bad))
            yield prediction
    finally:
        counts.seconds += time.perf_counter() - started


def summary_line(counts: Tally, *, verb: str, model: str, output: str | None = None) -> str:
    """``"5 images: 5 classified, 0 failed in 0.4 s (12.9 img/s, model efficientnet_lite0)"``;
    no rate for a run without images, or one too short to time."""
    wrote = f"; wrote {output}" if output else ""
    if counts.done == 0:
        return f"no images {verb} (model {model}){wrote}"
    rate = f"{counts.done / counts.seconds:.1f} img/s, " if counts.seconds >= 0.05 else ""
    return (
        f"{plural(counts.done, 'image')}: {counts.done - counts.failed} {verb}, {counts.failed} failed "
        f"in {counts.seconds:.1f} s ({rate}model {model}){wrote}"
    )
