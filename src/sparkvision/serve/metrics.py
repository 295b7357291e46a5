"""``GET /metrics``: the service's counters in the Prometheus text exposition format (version 0.0.4).

A few dozen lines instead of a dependency: counters and histograms keyed by label values, plus gauges
read at scrape time from the objects that own them (queues, budgets, model slots). Everything here is
updated from the event loop's thread, except batch observations, which arrive from the inference
thread; a lock keeps both safe.

Series (all prefixed ``sparkvision_``): ``http_requests_total{route,method,status}``,
``http_request_duration_seconds{route}``, ``batch_size{model}``, ``batch_duration_seconds{model}``,
``images_decoded_total{outcome}``, ``client_disconnects_total``, ``rejected_total{reason}``,
``model_evictions_total``, and the gauges ``queue_depth{queue}``, ``inflight{resource}``,
``model_load_seconds{model}``, ``model_loaded{model}``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["CONTENT_TYPE", "Counter", "Histogram", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

Labels = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(str(value))}"' for name, value in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Counter:
    name: str
    help: str
    label_names: Labels = ()
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        if not self.label_names and not self.values:
            yield f"{self.name} 0"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    label_names: Labels = ()
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf, which is also the count
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            for bound, count in zip((*self.buckets, math.inf), counts):
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, labels, le)} {count}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(self.sums[labels])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {counts[-1]}"


#: A gauge family read at scrape time: name, help, label names, and a function giving (labels, value).
GaugeReader = tuple[str, str, Labels, Callable[[], Iterable[tuple[Labels, float]]]]


class Metrics:
    """The service's metrics; :meth:`render` is the body of ``GET /metrics``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter(
            "sparkvision_http_requests_total", "HTTP requests answered", ("route", "method", "status")
        )
        self.latency = Histogram(
            "sparkvision_http_request_duration_seconds",
            "Time from request start to the end of the response",
            LATENCY_BUCKETS,
            ("route",),
        )
        self.batch_size = Histogram(
            "sparkvision_batch_size", "Images per model call", BATCH_BUCKETS, ("model",)
        )
        self.batch_seconds = Histogram(
            "sparkvision_batch_duration_seconds", "Time of one model call", LATENCY_BUCKETS, ("model",)
        )
        self.decoded = Counter(
            "sparkvision_images_decoded_total", "Uploaded images decoded, by outcome", ("outcome",)
        )
        self.disconnects = Counter(
            "sparkvision_client_disconnects_total", "Clients that went away before their answer"
        )
        self.rejected = Counter(
            "sparkvision_rejected_total",
            "Requests refused with 503 (overload) or 408, by reason",
            ("reason",),
        )
        self.evictions = Counter(
            "sparkvision_model_evictions_total", "Models unloaded to make room for another (--max-models)"
        )
        self._gauges: list[GaugeReader] = []

    def gauge(
        self, name: str, help: str, label_names: Labels, read: Callable[[], Iterable[tuple[Labels, float]]]
    ) -> None:
        """Register a gauge family whose values are read when ``/metrics`` is scraped."""
        self._gauges.append((name, help, label_names, read))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc(route, method, str(status))
            self.latency.observe(seconds, route)

    def observe_batch(self, model: str, size: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(size, model)
            self.batch_seconds.observe(seconds, model)

    def count(self, counter: Counter, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            counter.inc(*labels, amount=amount)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for family in (
                self.requests,
                self.latency,
                self.batch_size,
                self.batch_seconds,
                self.decoded,
                self.disconnects,
                self.rejected,
                self.evictions,
            ):
                lines.extend(family.render())
        for name, help, label_names, read in self._gauges:
            lines.append(f"# HELP {name} {help}")
            lines.append(f"# TYPE {name} gauge")
            for labels, value in read():
                lines.append(f"{name}{_labels(label_names, labels)} {_number(value)}")
        return "\n".join(lines) + "\n"
