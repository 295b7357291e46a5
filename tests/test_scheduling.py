"""How batches reach the engine: rows already in one buffer are passed on without a copy."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from sparkvision.scheduling import stack_pixels


def test_consecutive_rows_of_one_buffer_are_batched_in_place() -> None:
    buffer = np.arange(5 * 3 * 4 * 4, dtype=np.float32).reshape(5, 3, 4, 4)
    batch = stack_pixels([buffer[1], buffer[2], buffer[3]])
    assert np.shares_memory(batch, buffer)
    np.testing.assert_array_equal(batch, buffer[1:4])
    whole = stack_pixels(list(buffer))
    assert np.shares_memory(whole, buffer) and whole.shape == buffer.shape


def test_anything_else_is_stacked_into_a_new_array() -> None:
    buffer = np.arange(5 * 3 * 4 * 4, dtype=np.float32).reshape(5, 3, 4, 4)
    other = buffer.copy()
    cases = {
        "a gap (a failed image)": [buffer[0], buffer[2]],
        "out of order": [buffer[1], buffer[0]],
        "two buffers": [buffer[0], other[1]],
        "separate arrays": [buffer[0].copy(), buffer[1].copy()],
        "not whole rows": [buffer[0, :, :2], buffer[1, :, :2]],
    }
    for case, pixels in cases.items():
        batch = stack_pixels(pixels)
        assert not np.shares_memory(batch, buffer), case
        np.testing.assert_array_equal(batch, np.stack([p.copy() for p in pixels]), err_msg=case)


def _numbered(items: list[int]) -> Iterator[tuple[int, tuple[int, None]]]:
    return enumerate((item, None) for item in items)


def test_lanes_with_nothing_left_help_load_the_last_batches_and_order_is_kept() -> None:
    """Once the input has run out, an idle lane loads images of a batch another lane is still
    loading (a small folder is one batch: without help one core would decode it alone); each
    batch still reaches ``infer`` whole, in input order."""
    import threading
    import time

    from sparkvision.scheduling import Loaded, run_batches

    loaded_by: dict[int, str] = {}

    def load(source: int, out: np.ndarray | None = None) -> Loaded:
        time.sleep(0.01)  # decoding takes a while
        loaded_by[source] = threading.current_thread().name
        return Loaded(np.full((2,), source, dtype=np.float32))

    batches: list[list[int]] = []

    def infer(chunk: list, lane: bool) -> list[int]:
        batches.append([index for index, _, _ in chunk])
        return [int(stack_pixels([loaded.pixels for _, _, loaded in chunk])[i, 0]) for i in range(len(chunk))]

    results = [r for batch in run_batches(
        _numbered(list(range(8))), size=8, lanes=2, decode_workers=None, load=load, infer=infer
    ) for r in batch]  # fmt: skip
    assert results == list(range(8)) and batches == [list(range(8))]
    assert len(set(loaded_by.values())) == 2  # both lanes decoded part of the one batch


def test_a_failing_load_is_raised_not_waited_for() -> None:
    from sparkvision.scheduling import Loaded, run_batches

    def load(source: int, out: np.ndarray | None = None) -> Loaded:
        if source == 5:
            raise RuntimeError("decoder bug")
        return Loaded(np.zeros(2, dtype=np.float32))

    stream = run_batches(
        _numbered(list(range(12))), size=4, lanes=2, decode_workers=None, load=load,
        infer=lambda chunk, lane: [i for i, _, _ in chunk],
    )  # fmt: skip
    assert next(stream) == [0, 1, 2, 3]
    with pytest.raises(RuntimeError, match="decoder bug"):
        next(stream)
