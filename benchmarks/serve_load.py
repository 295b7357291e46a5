"""Load test of ``sparkvision serve``: concurrent clients posting real photos, with baselines.

What it measures, in one run on one machine:

1. **embedded**: ``Classifier.classify_batch`` in this process on the same photos (batch 16) — the
   throughput the service should come close to (target: requests/s at 8 clients ≥ 0.8 × this);
2. **micro-batched server**: ``sparkvision serve`` (default settings) under 1, 8 and 32 concurrent
   clients, each posting one photo per request for a bounded time;
3. **one-at-a-time server**: the same server with ``--max-batch 1`` (every request its own ONNX
   Runtime call) under the same loads — the speed-up column is 2 ÷ 3.

The two servers run side by side and the measurements alternate (embedded, then each load level on
one server and then the other), repeated ``--rounds`` times; the table shows medians.

Clients are asyncio tasks in this process, one keep-alive HTTP/1.1 connection each, sending
pre-built ``multipart`` requests (field ``file``, one photo) and parsing the JSON answers — a lean
load generator in the spirit of ``wrk``/``hey``, so that on a 2-core machine the client takes as
little CPU from the server as it can (``httpx`` cost about 7 ms of CPU per request here, a sixth of
the machine at 8 clients). The client's CPU per request is printed, so its share stays visible.
Only one configuration is under load at any time.

**Mixed mode** (``--mixed``): the service under pressure, as one hostile-ish crowd. One server with
its default limits; ``--clients`` (default 64) clients for ``--duration`` (default 30 s) each post, in
turn, a good photo (7 in 10 requests), a corrupt image (a truncated JPEG or PNG), a 49-megapixel PNG
(7000 × 7000, under the 50-megapixel limit per image) or a file that is not an image. Every answer
is checked: a photo must get the label the in-process classifier gives the same bytes, a corrupt
image 422, a non-image 415; ``503`` with ``Retry-After`` is the designed answer to overload and is
counted on its own; any other 5xx, a missing ``Retry-After`` or another answer is an error. Printed:
answers by kind and status, p50/p95 latency, and the server's peak RSS (``VmHWM``).

Usage::

    python benchmarks/serve_load.py                          # 1, 8, 32 clients, 10 s each
    python benchmarks/serve_load.py --clients 1,8 --duration 5 --json results.json
    python benchmarks/serve_load.py --mixed                  # 64 clients, 30 s, good + bad + huge
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "examples" / "images"


def load_photos() -> list[tuple[str, bytes]]:
    photos = [(p.name, p.read_bytes()) for p in sorted(PHOTOS.iterdir()) if p.suffix in (".jpg", ".png")]
    if not photos:
        raise SystemExit(f"no photos in {PHOTOS}")
    return photos


def embedded_throughput(
    model: str, photos: list[tuple[str, bytes]], seconds: float, threads: int | None
) -> float:
    """Images per second of the in-process classifier over the photos' bytes, batch 16."""
    from sparkvision import Classifier

    classifier = Classifier.pretrained(model, threads=threads)
    batch = [data for _, data in photos] * 4  # 20 images: the batch is cut at 16 like the CLI's
    batch = batch[:16]
    classifier.classify_batch(batch, top_k=5)  # warm-up (session creation)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += len(classifier.classify_batch(batch, top_k=5, batch_size=16))
    return done / (time.perf_counter() - started)


class Server:
    """``sparkvision serve`` in a subprocess on a free port."""

    def __init__(self, model: str, extra: list[str]) -> None:
        self.command = [
            sys.executable,
            "-c",
            "from sparkvision.cli import main; main()",
            "serve",
            "--model",
            model,
            "--port",
            "0",
            "--log-level",
            "warning",
            *extra,
        ]
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> Server:
        import httpx

        # stderr goes to ours (warnings stay visible); a pipe nobody reads could block the server.
        self.process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"http://[\d.]+:\d+/", line)
        if not match:
            self.__exit__()
            raise SystemExit(f"the server did not start: {line!r}")
        self.url = match.group(0)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(self.url + "readyz", timeout=5).status_code
                if ready == 200 or (ready == 404 and httpx.get(self.url + "healthz").status_code == 200):
                    return self  # (a server from before /readyz answers 200 on /healthz once ready)
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise SystemExit("the server's model did not load in time")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux; NaN elsewhere).

        Less sensitive than wall time to other work on a shared machine: it counts what this
        server spent, not how long it waited for a core.
        """
        assert self.process is not None
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kb(self) -> dict[str, int]:
        """The server's resident set now (``VmRSS``) and its peak so far (``VmHWM``), in KiB (Linux)."""
        assert self.process is not None
        values: dict[str, int] = {}
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(value.split()[0])
        except OSError:
            pass
        return values

    def stats(self) -> dict[str, Any]:
        import httpx

        body = httpx.get(self.url + "healthz", timeout=10).json()
        return body["batching"].get(body["model"], {})

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def multipart_request(host: str, path: str, name: str, data: bytes) -> bytes:
    """One complete HTTP/1.1 POST (headers + multipart body) carrying ``data`` as field ``file``."""
    boundary = "sparkvision-load-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; "
        f"boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status code and body of one HTTP/1.1 response with a ``Content-Length``."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def run_load(
    url: str, photos: list[tuple[str, bytes]], clients: int, seconds: float, warmup: float
) -> dict[str, Any]:
    """``clients`` tasks post photos back to back; latencies are kept for the timed window only."""
    match = re.match(r"http://([\d.]+):(\d+)/", url)
    assert match, url
    host, port = match.group(1), int(match.group(2))
    requests = [multipart_request(f"{host}:{port}", "/v1/classify?top_k=5", *photo) for photo in photos]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def worker(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        try:
            while time.perf_counter() < stop_at:
                request = requests[i % len(requests)]
                i += 1
                sent = time.perf_counter()
                try:
                    writer.write(request)
                    status, body = await read_response(reader)
                    ok = status == 200 and json.loads(body)["results"][0]["error"] is None
                    reason = f"HTTP {status}" if status != 200 else "error record"
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    ok, reason = False, exc.__class__.__name__
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                done = time.perf_counter()
                if sent >= measure_from and done <= stop_at:
                    if ok:
                        latencies.append(done - sent)
                    else:
                        errors[reason] = errors.get(reason, 0) + 1
        finally:
            writer.close()

    cpu_before = time.process_time()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    client_cpu = time.process_time() - cpu_before
    latencies.sort()
    count = len(latencies)

    def pct(q: float) -> float:
        return 1000.0 * latencies[min(count - 1, int(q * count))] if count else float("nan")

    total = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": count,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "rps": count / seconds,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "mean_ms": 1000.0 * statistics.fmean(latencies) if count else float("nan"),
        # Over warm-up and timed window alike, per request at the measured rate.
        "client_cpu_ms_per_request": 1000.0 * client_cpu / max(1.0, count * total / seconds),
    }


def measure(server: Server, label: str, clients: int, args: argparse.Namespace, photos) -> dict[str, Any]:
    before, cpu_before = server.stats(), server.cpu_seconds()
    row = asyncio.run(run_load(server.url, photos, clients, args.duration, args.warmup))
    after, cpu_after = server.stats(), server.cpu_seconds()
    batches = after.get("batches", 0) - before.get("batches", 0)
    images = after.get("images", 0) - before.get("images", 0)
    # CPU per request over warm-up and timed window together (both are steady load).
    cpu_ms = 1000.0 * (cpu_after - cpu_before) / images if images else float("nan")
    row.update(server=label, mean_batch=images / batches if batches else 0.0, cpu_ms_per_request=cpu_ms)
    print(
        f"  {label:<14} {clients:>3} clients: {row['rps']:6.1f} req/s  p50 {row['p50_ms']:7.1f} ms  "
        f"p95 {row['p95_ms']:7.1f} ms  errors {row['errors']}  mean batch {row['mean_batch']:.1f}  "
        f"server CPU {cpu_ms:.0f} ms/req  client CPU {row['client_cpu_ms_per_request']:.1f} ms/req",
        flush=True,
    )
    return row


# -- mixed mode -------------------------------------------------------------------------------------
def mixed_payloads(model: str) -> list[dict[str, Any]]:
    """The kinds of upload in mixed mode, each with what a correct answer is.

    ``expect``: ``("label", top-1 label)`` — the in-process classifier's answer for the same bytes —
    or ``("status", HTTP status)``.
    """
    import io

    from PIL import Image

    from sparkvision import Classifier

    classifier = Classifier.pretrained(model)
    payloads: list[dict[str, Any]] = []
    photos = load_photos()
    for name, data in photos:
        label = classifier.classify_batch([data], top_k=1)[0].labels[0]
        payloads.append({"kind": "good", "name": name, "data": data, "expect": ("label", label)})
    chelsea = dict(photos)["chelsea.jpg"]
    camera = dict(photos)["camera.png"]
    for name, data in (("half.jpg", chelsea[: len(chelsea) // 2]), ("half.png", camera[: len(camera) // 2])):
        payloads.append({"kind": "corrupt", "name": name, "data": data, "expect": ("status", 422)})
    payloads.append(
        {
            "kind": "not-image",
            "name": "notes.jpg",
            "data": b"meeting notes\n" * 400,
            "expect": ("status", 415),
        }
    )
    with Image.open(io.BytesIO(dict(photos)["coffee.jpg"])) as img:
        big = img.convert("RGB").resize((7000, 7000), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    huge = buffer.getvalue()
    label = classifier.classify_batch([huge], top_k=1)[0].labels[0]
    payloads.append({"kind": "huge", "name": "huge-49mp.png", "data": huge, "expect": ("label", label)})
    return payloads


#: One round of a mixed client: 7 good photos, 1 corrupt, 1 huge, 1 not an image (shuffled per client).
MIX = ["good"] * 7 + ["corrupt", "huge", "not-image"]


async def read_full_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key:
            headers[key.strip().lower()] = value.strip()
    return status, headers, await reader.readexactly(int(headers.get("content-length", "0")))


def judge(payload: dict[str, Any], status: int, headers: dict[str, str], body: bytes) -> str:
    """``ok``, ``busy`` (503 with Retry-After) or a short description of what was wrong."""
    if status == 503:
        return "busy" if headers.get("retry-after") else "503 without Retry-After"
    if status >= 500:
        return f"HTTP {status}"
    how, expected = payload["expect"]
    if how == "status":
        return "ok" if status == expected else f"{payload['kind']}: HTTP {status}, expected {expected}"
    if status != 200:
        return f"{payload['kind']}: HTTP {status}"
    record = json.loads(body)["results"][0]
    labels = record.get("labels") or [None]
    return "ok" if labels[0] == expected else f"{payload['kind']}: {labels[0]!r}, expected {expected!r}"


async def run_mixed(url: str, payloads: list[dict[str, Any]], clients: int, seconds: float) -> dict[str, Any]:
    import random

    match = re.match(r"http://([\d.]+):(\d+)/", url)
    assert match, url
    host, port = match.group(1), int(match.group(2))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for payload in payloads:
        payload["request"] = multipart_request(
            f"{host}:{port}", "/v1/classify?top_k=5", payload["name"], payload["data"]
        )
        by_kind.setdefault(payload["kind"], []).append(payload)
    outcomes: dict[str, dict[str, int]] = {}
    latencies: dict[str, list[float]] = {}
    stop_at = time.perf_counter() + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                order = MIX[:]
                rng.shuffle(order)
                for kind in order:
                    if time.perf_counter() >= stop_at:
                        break
                    payload = rng.choice(by_kind[kind])
                    sent = time.perf_counter()
                    try:
                        writer.write(payload["request"])
                        status, headers, body = await read_full_response(reader)
                        verdict = judge(payload, status, headers, body)
                        if headers.get("connection", "").lower() == "close":
                            writer.close()
                            reader, writer = await asyncio.open_connection(host, port)
                    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                        verdict = f"transport: {exc.__class__.__name__}"
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                    elapsed = time.perf_counter() - sent
                    counts = outcomes.setdefault(kind, {})
                    counts[verdict] = counts.get(verdict, 0) + 1
                    if verdict == "ok":
                        latencies.setdefault(kind, []).append(elapsed)
                        latencies.setdefault("all answered", []).append(elapsed)
        finally:
            writer.close()

    await asyncio.gather(*(client(k) for k in range(clients)))

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return 1000.0 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    return {
        "clients": clients,
        "seconds": seconds,
        "outcomes": outcomes,
        "latency_ms": {
            kind: {"n": len(v), "p50": pct(v, 0.5), "p95": pct(v, 0.95), "max": pct(v, 1.0)}
            for kind, v in latencies.items()
        },
    }


def mixed_main(args: argparse.Namespace) -> None:
    clients = args.clients[0] if args.clients != [1, 8, 32] else 64
    seconds = args.duration if args.duration != 10.0 else 30.0
    print("preparing payloads (the 49-megapixel PNG and the expected labels) …", flush=True)
    payloads = mixed_payloads(args.model)
    sizes: dict[str, int] = {}
    for payload in payloads:
        sizes[payload["kind"]] = max(sizes.get(payload["kind"], 0), len(payload["data"]))
    print(f"cores: {os.cpu_count()}; model: {args.model}; clients: {clients}; {seconds:g} s; sizes: {sizes}")
    extra = ["--threads", str(args.threads)] if args.threads else []
    with Server(args.model, extra) as server:
        before = server.memory_kb()
        cpu_before = server.cpu_seconds()
        result = asyncio.run(run_mixed(server.url, payloads, clients, seconds))
        after = server.memory_kb()
        result["server_cpu_s"] = server.cpu_seconds() - cpu_before
        result["rss_mb_idle"] = before.get("VmRSS", 0) / 1024
        result["peak_rss_mb"] = after.get("VmHWM", 0) / 1024
    total = sum(sum(c.values()) for c in result["outcomes"].values())
    busy = sum(c.get("busy", 0) for c in result["outcomes"].values())
    wrong = sum(n for c in result["outcomes"].values() for v, n in c.items() if v not in ("ok", "busy"))
    five = sum(
        n for c in result["outcomes"].values() for v, n in c.items() if v.startswith(("HTTP 5", "503 "))
    )
    result.update(requests=total, busy_503=busy, wrong=wrong, other_5xx=five)
    print(f"\n{total} answers in {seconds:g} s from {clients} clients ({total / seconds:.1f}/s)")
    print("| kind | answers | correct | 503 + Retry-After | wrong / other | p50 ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("good", "corrupt", "not-image", "huge"):
        counts = result["outcomes"].get(kind, {})
        lat = result["latency_ms"].get(kind, {"p50": float("nan"), "p95": float("nan"), "max": float("nan")})
        other = {v: n for v, n in counts.items() if v not in ("ok", "busy")}
        print(
            f"| {kind} | {sum(counts.values())} | {counts.get('ok', 0)} | {counts.get('busy', 0)} | "
            f"{sum(other.values())}{' ' + str(other) if other else ''} | {lat['p50']:.0f} | {lat['p95']:.0f} | "
            f"{lat['max']:.0f} |"
        )
    overall = result["latency_ms"].get("all answered", {})
    print(
        f"5xx other than 503: {five}; wrong answers: {wrong}; 503 with Retry-After: {busy}; "
        f"p95 of correct answers: {overall.get('p95', float('nan')):.0f} ms; server RSS idle "
        f"{result['rss_mb_idle']:.0f} MB, peak {result['peak_rss_mb']:.0f} MB; server CPU "
        f"{result['server_cpu_s']:.1f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if wrong or five:
        raise SystemExit(1)


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median requests/s (a whole row, so its latencies belong with it)."""
    ordered = sorted(rows, key=lambda r: r["rps"])
    row = dict(ordered[len(ordered) // 2])
    row["errors"] = sum(r["errors"] for r in rows)  # errors count over every round
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--clients", default="1,8,32", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--duration", type=float, default=10.0, help="timed seconds per load level")
    parser.add_argument("--warmup", type=float, default=2.0, help="untimed seconds before each level")
    parser.add_argument("--rounds", type=int, default=1, help="repeat everything; report medians")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=None, help="default: the server's")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument(
        "--mixed", action="store_true", help="mixed good/corrupt/huge/non-image load (64 clients, 30 s)"
    )
    args = parser.parse_args()
    if args.mixed:
        mixed_main(args)
        return

    photos = load_photos()
    print(f"photos: {', '.join(name for name, _ in photos)}; cores: {os.cpu_count()}; model: {args.model}")
    common = (["--max-wait-ms", str(args.max_wait_ms)] if args.max_wait_ms is not None else []) + (
        ["--threads", str(args.threads)] if args.threads else []
    )
    embedded: list[float] = []
    batched: dict[int, list[dict[str, Any]]] = {c: [] for c in args.clients}
    single: dict[int, list[dict[str, Any]]] = {c: [] for c in args.clients}
    # Both servers stay up (an idle one costs nothing) and the measurements alternate, so that a
    # burst of load from elsewhere on a shared machine hits every configuration alike.
    with (
        Server(args.model, ["--max-batch", str(args.max_batch), *common]) as micro,
        Server(args.model, ["--max-batch", "1", *common]) as one,
    ):
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no}/{args.rounds}")
            embedded.append(
                embedded_throughput(args.model, photos, max(args.duration / 2, 4.0), args.threads)
            )
            print(f"  embedded classify_batch (batch 16): {embedded[-1]:.1f} img/s", flush=True)
            for clients in args.clients:
                batched[clients].append(measure(micro, "micro-batched", clients, args, photos))
                single[clients].append(measure(one, "one-at-a-time", clients, args, photos))

    base = statistics.median(embedded)
    print()
    print(
        f"medians of {args.rounds} round(s); embedded classify_batch: {base:.1f} img/s "
        f"(rounds: {', '.join(f'{e:.1f}' for e in embedded)})"
    )
    print(
        "| clients | micro-batched req/s | p50 ms | p95 ms | errors | mean batch | CPU ms/req "
        "| one-at-a-time req/s | p50 ms | p95 ms | CPU ms/req | speed-up | ÷ embedded |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for clients in args.clients:
        b, s = median_row(batched[clients]), median_row(single[clients])
        speedup = b["rps"] / s["rps"] if s["rps"] else float("nan")
        summary.append({"clients": clients, "batched": b, "single": s, "speedup": speedup})
        print(
            f"| {clients} | {b['rps']:.1f} | {b['p50_ms']:.0f} | {b['p95_ms']:.0f} | {b['errors']} | "
            f"{b['mean_batch']:.1f} | {b['cpu_ms_per_request']:.0f} | {s['rps']:.1f} | {s['p50_ms']:.0f} | "
            f"{s['p95_ms']:.0f} | {s['cpu_ms_per_request']:.0f} | {speedup:.2f}× | {b['rps'] / base:.2f} |"
        )
    if args.json:
        payload = {"embedded_img_per_s": embedded, "summary": summary, "batched": batched, "single": single}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
