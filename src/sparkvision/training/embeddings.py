"""Image embeddings from a base model, computed once and cached on disk.

Training a head is cheap; running the base network is not (≈ 20 ms per image on two cores). So every
embedding is stored in an SQLite file under the sparkvision cache, keyed by

* the model's fingerprint — the SHA-256 of ``model.onnx`` plus the preprocessing spec, so a changed
  model or preprocessing never reuses stale vectors — and
* the image file's absolute path, modification time (ns) and size, so an edited file is re-embedded.

A second ``sparkvision train`` on the same folder (another seed, more epochs, a different head) then
skips the network entirely. Images that cannot be read are reported, not cached: the next run tries
them again. In-memory images (Spark rows, arrays) are embedded without the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..models.spec import MODEL_FILE
from ..models.store import cache_home
from ..tasks.classification import Classifier

__all__ = ["EmbeddingCache", "Embeddings", "embed_files", "model_fingerprint"]

log = logging.getLogger(__name__)

_FINGERPRINTS: dict[tuple[str, int, int, str], str] = {}
_FINGERPRINTS_LOCK = threading.Lock()


def model_fingerprint(classifier: Classifier) -> str:
    """SHA-256 of the model file and its preprocessing (memoised per file path, mtime and size)."""
    model_file = (classifier.model_dir / MODEL_FILE).resolve()
    stat = model_file.stat()
    preprocess = json.dumps(classifier.spec.preprocess.to_dict(), sort_keys=True)
    key = (str(model_file), stat.st_mtime_ns, stat.st_size, preprocess)
    with _FINGERPRINTS_LOCK:
        if key in _FINGERPRINTS:
            return _FINGERPRINTS[key]
    digest = hashlib.sha256()
    with open(model_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    digest.update(preprocess.encode())
    fingerprint = digest.hexdigest()
    with _FINGERPRINTS_LOCK:
        _FINGERPRINTS[key] = fingerprint
    return fingerprint


def _file_key(path: Path) -> tuple[str, int, int] | None:
    try:
        resolved = path.resolve()
        stat = resolved.stat()
    except OSError:
        return None
    return str(resolved), stat.st_mtime_ns, stat.st_size


class EmbeddingCache:
    """Embeddings on disk, in one SQLite file (default ``$SPARKVISION_HOME/embeddings.sqlite``).

    Safe to share between processes (SQLite locking; writes are short transactions). Delete the file
    to reclaim the space; nothing else refers to it.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else cache_home() / "embeddings.sqlite"
        self._connection: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            connection.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                " model TEXT NOT NULL, path TEXT NOT NULL, mtime_ns INTEGER NOT NULL,"
                " size INTEGER NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,"
                " PRIMARY KEY (model, path))"
            )
            connection.commit()
            self._connection = connection
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, model: str, keys: Sequence[tuple[str, int, int]]) -> dict[str, np.ndarray]:
        """Cached vectors for the files whose path, mtime and size all match."""
        db = self._db()
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            wanted = {path: (mtime, size) for path, mtime, size in chunk}
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT path, mtime_ns, size, dim, vector FROM embeddings WHERE model = ? AND path IN ({marks})",
                [model, *wanted],
            )
            for path, mtime, size, dim, blob in rows:
                if wanted.get(path) == (mtime, size) and len(blob) == 4 * dim:
                    found[path] = np.frombuffer(blob, dtype="<f4").copy()
        return found

    def put(self, model: str, items: Sequence[tuple[tuple[str, int, int], np.ndarray]]) -> None:
        """Store vectors (replacing older entries for the same files)."""
        if not items:
            return
        db = self._db()
        rows = [
            (model, key[0], key[1], key[2], int(vec.size), np.asarray(vec, dtype="<f4").tobytes())
            for key, vec in items
        ]
        with db:
            db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?, ?)", rows)


@dataclass
class Embeddings:
    """Embeddings of a list of images, aligned with it.

    Attributes:
        vectors: ``len(paths) × dim`` float32; rows of failed images are zero.
        ok: which rows hold a real embedding.
        errors: ``{index: message}`` for the images that could not be read.
        from_cache: how many rows came from the on-disk cache.
        seconds: wall time spent, including the cache look-up.
    """

    vectors: np.ndarray
    ok: np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    from_cache: int = 0
    computed: int = 0
    seconds: float = 0.0

    def failed(self, paths: Sequence[Path]) -> list[tuple[str, str]]:
        """``(path, message)`` for every image that could not be read."""
        return [(str(paths[i]), message) for i, message in sorted(self.errors.items())]


def embed_files(
    classifier: Classifier,
    paths: Sequence[Path],
    *,
    cache: EmbeddingCache | None = None,
    batch_size: int | None = None,
    progress: Any = None,
) -> Embeddings:
    """Embed image files with ``classifier``'s ``embeddings`` output, reusing cached vectors.

    ``progress``: an object with ``update(n)`` (a tqdm bar); it advances for cached images too.
    """
    spec = classifier.spec
    if not spec.has_embeddings:
        raise ConfigError(
            f"model {spec.name!r} has no 'embeddings' output, so it cannot be a base for training "
            "or embedding; use efficientnet_lite0/1/2 or another model that exports embeddings"
        )
    started = time.perf_counter()
    count = len(paths)
    keys = [_file_key(Path(p)) for p in paths]
    fingerprint = model_fingerprint(classifier) if cache is not None else ""
    cached = cache.get(fingerprint, [k for k in keys if k is not None]) if cache is not None else {}

    vectors: np.ndarray | None = None
    ok = np.zeros(count, dtype=bool)
    errors: dict[int, str] = {}
    todo: list[int] = []
    from_cache = 0
    for i, key in enumerate(keys):
        vector = cached.get(key[0]) if key is not None else None
        if vector is None:
            todo.append(i)
            continue
        if vectors is None:
            vectors = np.zeros((count, vector.size), dtype=np.float32)
        vectors[i] = vector
        ok[i] = True
        from_cache += 1
    if progress is not None and from_cache:
        progress.update(from_cache)

    pending: list[tuple[tuple[str, int, int], np.ndarray]] = []
    todo_paths = [Path(paths[i]) for i in todo]
    for prediction in classifier.classify(
        todo_paths, top_k=1, batch_size=batch_size, embeddings=True, progress=progress
    ):
        row = todo[prediction.index]
        if prediction.error is not None or prediction.embedding is None:
            errors[row] = prediction.error or "the model returned no embedding"
            continue
        if vectors is None:
            vectors = np.zeros((count, prediction.embedding.size), dtype=np.float32)
        vectors[row] = prediction.embedding
        ok[row] = True
        key = keys[row]
        if cache is not None and key is not None:
            pending.append((key, prediction.embedding))
            if len(pending) >= 256:  # commit as we go: an interrupted run keeps what it computed
                cache.put(fingerprint, pending)
                pending = []
    if cache is not None:
        cache.put(fingerprint, pending)
    if vectors is None:
        vectors = np.zeros((count, 0), dtype=np.float32)
    return Embeddings(
        vectors=vectors,
        ok=ok,
        errors=errors,
        from_cache=from_cache,
        computed=len(todo) - len(errors),
        seconds=time.perf_counter() - started,
    )
