"""The request policy every front shares: how many labels, which threshold, which candidate labels.

The Python API, the CLI, the web service and the Spark stages all ask these functions, so that one
request gets the same answer — or the same :class:`~sparkvision.errors.ConfigError` — whichever way
it arrives. A front only translates the error into its own dialect (an ``error:`` line, HTTP 422, a
Spark ``ValueError``).

* **top-k**: ``None`` means "the default", :data:`DEFAULT_TOP_K` (5) lowered to the number of labels
  the model can give (a 3-class model gets 3); an explicit value must lie in ``1..labels``.
* **threshold**: ``None`` (keep every top-k label) or a finite number (a score, usually in ``[0, 1]``;
  a model without activation scores raw logits).
* **candidate labels** (zero-shot models): a comma-separated string or a sequence. Each label is
  stripped; blank entries are skipped (so ``"a cat, a dog,"`` is two labels); at least one label must
  remain, at most :data:`MAX_CANDIDATE_LABELS`, each at most :data:`MAX_LABEL_CHARS` characters, and a
  repeated label is an error (its scores would split between the copies).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .errors import ConfigError

__all__ = [
    "DEFAULT_TOP_K",
    "MAX_CANDIDATE_LABELS",
    "MAX_LABEL_CHARS",
    "check_threshold",
    "parse_candidate_labels",
    "resolve_top_k",
]

#: Labels per image when the request names no number.
DEFAULT_TOP_K = 5
#: Most candidate labels one zero-shot request may carry (each costs a text-tower pass).
MAX_CANDIDATE_LABELS = 1000
#: Longest candidate label, in characters (CLIP truncates its prompts at 77 tokens anyway).
MAX_LABEL_CHARS = 300


def resolve_top_k(
    top_k: int | None, num_labels: int, *, default: int = DEFAULT_TOP_K, name: str = "top_k"
) -> int:
    """The number of labels to return per image for a model that can give ``num_labels``.

    ``None`` gives ``min(default, num_labels)``; any other value must be an integer in
    ``1..num_labels``, else :class:`ConfigError` says the allowed range. ``name`` is what the
    front calls the option (``topK`` on a Spark stage), for the message.
    """
    if top_k is None:
        return max(1, min(default, num_labels))
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_labels:
        raise ConfigError(
            f"{name} must be between 1 and {num_labels} (the labels to choose from: the model's classes, "
            f"or the candidate labels given), got {top_k!r}"
        )
    return top_k


def check_threshold(threshold: float | None) -> float | None:
    """``threshold`` as a float (or ``None``: keep all top-k labels); NaN and infinities are refused."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ConfigError(f"threshold must be a finite number (a score such as 0.2), got {threshold!r}")
    return float(threshold)


def parse_candidate_labels(labels: str | Sequence[str]) -> tuple[str, ...]:
    """Candidate labels from ``"a cat, a dog"`` or ``["a cat", "a dog"]``: stripped, blanks skipped,
    checked (at least one, distinct, within the count and length limits)."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    parsed = tuple(stripped for item in items if (stripped := str(item).strip()))
    if not parsed:
        raise ConfigError("give at least one candidate label (e.g. 'a cat,a dog')")
    if len(parsed) > MAX_CANDIDATE_LABELS:
        raise ConfigError(f"at most {MAX_CANDIDATE_LABELS} candidate labels, got {len(parsed)}")
    long = [label for label in parsed if len(label) > MAX_LABEL_CHARS]
    if long:
        raise ConfigError(
            f"a candidate label may have at most {MAX_LABEL_CHARS} characters: {long[0][:40]!r}…"
        )
    seen: set[str] = set()
    repeated = sorted({label for label in parsed if label in seen or seen.add(label)})
    if repeated:
        raise ConfigError(f"candidate labels must be distinct; repeated: {', '.join(repeated)}")
    return parsed
