"""The micro-batcher on its own: grouping, ordering, per-request top_k, failures and the wait bound."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sparkvision.results import Prediction
from sparkvision.serve.batching import MicroBatcher, QueueFullError

LABELS = tuple(f"class{i}" for i in range(10))


class RecordingClassifier:
    """Answers ``class<n>`` first for source ``n``; records every call's sources and options."""

    def __init__(self, delay: float = 0.0, fail_on: object = None) -> None:
        self.delay = delay
        self.fail_on = fail_on
        self.calls: list[tuple[list[object], dict]] = []
        self.lock = threading.Lock()

    def classify_batch(self, sources, **options):
        with self.lock:
            self.calls.append((list(sources), options))
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in sources:
            raise RuntimeError("model exploded")
        k = options["top_k"]
        out = []
        for n in sources:
            order = [n, *[i for i in range(10) if i != n]][:k]
            out.append(
                Prediction(
                    path=None,
                    labels=tuple(LABELS[i] for i in order),
                    scores=tuple(1.0 / (r + 1) for r in range(k)),
                    class_ids=tuple(order),
                )
            )
        return out


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def test_concurrent_submissions_share_calls_and_keep_order(executor):
    clf = RecordingClassifier(delay=0.05)

    async def main():
        batcher = MicroBatcher(clf, executor, max_batch=4, max_wait_s=0.002)
        results = await asyncio.gather(
            *(batcher.submit([n], top_k=1 + n % 3, paths=[f"f{n}"]) for n in range(10))
        )
        await batcher.close()
        return batcher, results

    batcher, results = run(main())
    for n, (item,) in enumerate(results):
        assert item.prediction.labels[0] == f"class{n}" and item.prediction.path == f"f{n}"
        assert len(item.prediction.labels) == 1 + n % 3  # each request's own top_k
        assert len(item.prediction.scores) == len(item.prediction.class_ids) == 1 + n % 3
    sizes = [len(sources) for sources, _ in clf.calls]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) <= 4
    assert all(options["batch_size"] == len(sources) for sources, options in clf.calls)
    assert all(options["top_k"] == max(1 + n % 3 for n in sources) for sources, options in clf.calls)
    assert batcher.stats.images == 10 and batcher.stats.largest == 4


def test_a_lone_request_does_not_wait(executor):
    clf = RecordingClassifier()

    async def main():
        batcher = MicroBatcher(clf, executor, max_batch=8, max_wait_s=0.5)
        started = time.perf_counter()
        await batcher.submit([1], top_k=1)
        elapsed = time.perf_counter() - started
        await batcher.close()
        return elapsed

    assert run(main()) < 0.25  # far below the 0.5 s wait bound: nobody else was announced


def test_announced_requests_are_waited_for_but_only_up_to_the_bound(executor):
    clf = RecordingClassifier()

    async def main():
        batcher = MicroBatcher(clf, executor, max_batch=8, max_wait_s=0.2)
        batcher.incoming(1)  # another image is being decoded

        async def late():
            await asyncio.sleep(0.05)
            batcher.incoming(-1)
            return await batcher.submit([2], top_k=1)

        await asyncio.gather(batcher.submit([1], top_k=1), late())
        joined = [len(s) for s, _ in clf.calls]

        clf.calls.clear()
        batcher.incoming(1)  # announced but never comes
        started = time.perf_counter()
        await batcher.submit([3], top_k=1)
        waited = time.perf_counter() - started
        batcher.incoming(-1)
        await batcher.close()
        return joined, waited

    joined, waited = run(main())
    assert joined == [2]  # the late image joined the first one's batch
    assert 0.15 <= waited < 1.0


def test_candidate_label_sets_never_share_a_call(executor):
    clf = RecordingClassifier(delay=0.02)

    async def main():
        batcher = MicroBatcher(clf, executor, max_batch=8, max_wait_s=0.01)
        await asyncio.gather(
            batcher.submit([1], top_k=1, candidate_labels=["a", "b"]),
            batcher.submit([2], top_k=1, candidate_labels=["c", "d"]),
            batcher.submit([3], top_k=1, candidate_labels=["a", "b"]),
            batcher.submit([4], top_k=1),
        )
        await batcher.close()

    run(main())
    by_labels = {}
    for sources, options in clf.calls:
        by_labels.setdefault(tuple(options.get("candidate_labels") or ()), []).extend(sources)
    assert sorted(by_labels[("a", "b")]) == [1, 3]
    assert by_labels[("c", "d")] == [2] and by_labels[()] == [4]
    assert all("candidate_labels" not in options for sources, options in clf.calls if 4 in sources)


def test_a_failing_call_fails_its_requests_only(executor):
    clf = RecordingClassifier(fail_on=7)

    async def main():
        batcher = MicroBatcher(clf, executor, max_batch=1, max_wait_s=0)
        outcomes = await asyncio.gather(
            batcher.submit([7], top_k=1), batcher.submit([1], top_k=1), return_exceptions=True
        )
        after = await batcher.submit([2], top_k=1)  # the collector survives
        await batcher.close()
        return outcomes, after

    outcomes, after = run(main())
    assert isinstance(outcomes[0], RuntimeError) and "exploded" in str(outcomes[0])
    assert outcomes[1][0].prediction.labels[0] == "class1"
    assert after[0].prediction.labels[0] == "class2"


def test_queue_limit(executor):
    clf = RecordingClassifier(delay=0.2)

    async def main():
        batcher = MicroBatcher(clf, executor, max_batch=1, max_queue=3)
        first = asyncio.ensure_future(batcher.submit([0, 1, 2], top_k=1))
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError):
            await batcher.submit([3], top_k=1)
        await first
        await batcher.close()

    run(main())


def test_inference_runs_off_the_event_loop(executor):
    clf = RecordingClassifier(delay=0.3)

    async def main():
        batcher = MicroBatcher(clf, executor)
        task = asyncio.ensure_future(batcher.submit([1], top_k=1))
        ticks = 0
        started = time.perf_counter()
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await batcher.close()
        return ticks, time.perf_counter() - started

    ticks, elapsed = run(main())
    assert elapsed >= 0.3 and ticks >= 10  # the loop kept running while the model worked
