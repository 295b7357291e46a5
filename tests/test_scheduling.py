"""How batches reach the engine: rows already in one buffer are passed on without a copy."""

from __future__ import annotations

import numpy as np

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
