"""Train a linear classification head on image embeddings.

Two trainers produce the same thing — a :class:`LinearHead` (``logits = x · Wᵀ + b`` on the raw
embeddings, with the feature standardisation folded into ``W`` and ``b``), which export fuses into
the base network as one ``Gemm``:

* ``"logistic"`` (the default): scikit-learn's :class:`~sklearn.linear_model.LogisticRegression`
  (multinomial, L-BFGS) on standardised features. With a validation split, the regularisation
  strength ``C`` is chosen on it from a small grid — held-out data decides how far the fit may go,
  which is the job early stopping does for an iterative trainer. ``epochs`` caps the L-BFGS
  iterations (each one a full pass over the embeddings). Needs ``pip install 'sparkvision[train]'``.
* ``"softmax"``: the same model trained in numpy with Adam on mini-batches for up to ``epochs``
  epochs, with early stopping on the validation loss (the best epoch's weights are kept). Needs
  nothing beyond numpy.

Both are deterministic for a given ``seed``. Measured with ``benchmarks/training.py`` (see
docs/training.md) on validation images from *source photos the head never saw*: the validated L-BFGS
fit reached 0.98 where early-stopped Adam reached 0.96 — with a shifted validation set the validation
loss turns up after a few epochs, before the weights are good — at a comparable cost (well under a
second per 1,000 embeddings). Hence ``"logistic"`` is the default.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError, MissingExtraError
from ..extras import install_hint

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_HEAD", "HEAD_KINDS", "HeadFit", "LinearHead", "fit_head"]

log = logging.getLogger(__name__)

HeadKind = Literal["softmax", "logistic"]
HEAD_KINDS: tuple[str, ...] = ("logistic", "softmax")
DEFAULT_HEAD: HeadKind = "logistic"
#: Default ``epochs``: L-BFGS iteration cap for "logistic", epoch cap for "softmax" (early stopping ends it sooner).
DEFAULT_EPOCHS: dict[str, int] = {"logistic": 1000, "softmax": 200}

#: Regularisation strengths tried by the scikit-learn trainer (inverse L2 weight, on standardised data).
LOGISTIC_C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0)


@dataclass(frozen=True)
class LinearHead:
    """``logits = embeddings · weight.T + bias`` (``weight``: classes × dim, float32)."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        weight = np.ascontiguousarray(self.weight, dtype=np.float32)
        bias = np.ascontiguousarray(self.bias, dtype=np.float32).reshape(-1)
        if weight.ndim != 2 or weight.shape[0] != bias.shape[0]:
            raise ConfigError(f"head weight {weight.shape} and bias {bias.shape} do not match")
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise ConfigError("the trained head has non-finite weights; check the embeddings")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, dtype=np.float32) @ self.weight.T + self.bias

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        return self.logits(embeddings).argmax(axis=1)


@dataclass(frozen=True)
class HeadFit:
    """A trained head and how it was obtained.

    ``epochs_run``/``best_epoch`` are for the iterative trainer; ``history`` holds one entry per
    epoch (softmax) or per regularisation strength tried (logistic).
    """

    head: LinearHead
    kind: str
    settings: dict[str, Any]
    train_accuracy: float
    val_accuracy: float | None
    val_loss: float | None
    seconds: float
    epochs_run: int | None = None
    best_epoch: int | None = None
    history: list[dict[str, float]] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "settings": self.settings,
            "train_accuracy": self.train_accuracy,
            "val_accuracy": self.val_accuracy,
            "val_loss": self.val_loss,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "seconds": round(self.seconds, 3),
        }


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    # Channels that never vary carry no information; keep them from dividing by ~0.
    std = np.where(std < 1e-6, 1.0, std)
    return mean.astype(np.float64), std.astype(np.float64)


def _fold(weight_std: np.ndarray, bias_std: np.ndarray, mean: np.ndarray, std: np.ndarray) -> LinearHead:
    """Turn a head on standardised inputs ``(x - mean) / std`` into one on raw inputs."""
    weight = weight_std / std
    bias = bias_std - weight @ mean
    return LinearHead(weight=weight.astype(np.float32), bias=bias.astype(np.float32))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _loss_accuracy(head: LinearHead, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    z = head.logits(x).astype(np.float64)
    logp = _log_softmax(z)
    loss = float(-logp[np.arange(len(y)), y].mean())
    return loss, float((z.argmax(axis=1) == y).mean())


def _check(x: np.ndarray, y: np.ndarray, num_classes: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ConfigError(f"{what}: expected an N×D embedding matrix and N targets, got {x.shape}, {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(f"{what}: targets must be in [0, {num_classes})")
    if not np.isfinite(x).all():
        raise ConfigError(f"{what}: embeddings contain NaN or infinity")
    return x, y


def fit_head(
    x_train: np.ndarray,
    y_train: Sequence[int] | np.ndarray,
    num_classes: int,
    x_val: np.ndarray | None = None,
    y_val: Sequence[int] | np.ndarray | None = None,
    *,
    kind: HeadKind = "logistic",
    epochs: int | None = None,
    patience: int = 10,
    seed: int = 0,
    progress: Any = None,
) -> HeadFit:
    """Train a linear head on embeddings ``x_train`` (N×D) with class indices ``y_train``.

    With validation data, ``C`` selection (logistic) or early stopping (softmax) uses it; without, the
    logistic head uses ``C=1`` and the softmax head runs all ``epochs``. ``epochs=None`` takes the
    kind's default (:data:`DEFAULT_EPOCHS`).
    ``progress``: an object with ``update(n)`` (a tqdm bar), advanced once per epoch (softmax) or
    per ``C`` tried (logistic).
    """
    if kind not in HEAD_KINDS:
        raise ConfigError(f"unknown head {kind!r}; use one of {', '.join(HEAD_KINDS)}")
    if num_classes < 2:
        raise ConfigError("a classifier needs at least two classes")
    if epochs is None:
        epochs = DEFAULT_EPOCHS[kind]
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    x_tr, y_tr = _check(x_train, np.asarray(y_train), num_classes, "training data")
    if len(y_tr) == 0:
        raise ConfigError("no training images left to train on")
    missing = sorted(set(range(num_classes)) - set(y_tr.tolist()))
    if missing:
        raise ConfigError(f"classes {missing} have no training images")
    val: tuple[np.ndarray, np.ndarray] | None = None
    if x_val is not None and y_val is not None and len(y_val):
        val = _check(x_val, np.asarray(y_val), num_classes, "validation data")
    started = time.perf_counter()
    with _single_threaded_blas():
        if kind == "softmax":
            fit = _fit_softmax(
                x_tr, y_tr, num_classes, val, epochs=epochs, patience=patience, seed=seed, progress=progress
            )
        else:
            fit = _fit_logistic(x_tr, y_tr, num_classes, val, epochs=epochs, seed=seed, progress=progress)
    return HeadFit(**{**fit, "seconds": time.perf_counter() - started})


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS thread: the products here are small, and extra BLAS threads fighting ONNX Runtime and
    other processes for the cores made both trainers 3–12× slower (measured on 2 busy cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it we just run with the default threads
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _fit_softmax(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    val: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    patience: int,
    seed: int,
    progress: Any,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-3,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Adam on the mean cross-entropy + ``weight_decay/2·‖W‖²``, over standardised features."""
    rng = np.random.default_rng(seed)
    mean, std = _standardiser(x)
    xs = ((x - mean) / std).astype(np.float32)
    n, dim = xs.shape
    weight = np.zeros((num_classes, dim), dtype=np.float32)
    bias = np.zeros(num_classes, dtype=np.float32)
    moments = [np.zeros_like(weight), np.zeros_like(bias), np.zeros_like(weight), np.zeros_like(bias)]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    onehot = np.eye(num_classes, dtype=np.float32)[y]
    step = 0
    best: tuple[float, int, LinearHead] | None = None
    history: list[dict[str, float]] = []
    stale = 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            xb = xs[rows]
            z = xb @ weight.T + bias
            z -= z.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            delta = (p - onehot[rows]) / len(rows)
            grads = (delta.T @ xb + weight_decay * weight, delta.sum(axis=0))
            step += 1
            for j, (param, grad) in enumerate(zip((weight, bias), grads)):
                m, v = moments[j], moments[j + 2]
                m *= beta1
                m += (1 - beta1) * grad
                v *= beta2
                v += (1 - beta2) * grad * grad
                m_hat = m / (1 - beta1**step)
                v_hat = v / (1 - beta2**step)
                param -= learning_rate * m_hat / (np.sqrt(v_hat) + eps)
        head = _fold(weight.astype(np.float64), bias.astype(np.float64), mean, std)
        train_loss, train_acc = _loss_accuracy(head, x, y)
        record = {"epoch": float(epoch), "train_loss": train_loss, "train_accuracy": train_acc}
        if val is not None:
            val_loss, val_acc = _loss_accuracy(head, *val)
            record.update(val_loss=val_loss, val_accuracy=val_acc)
            if best is None or val_loss < best[0] - 1e-6:
                best, stale = (val_loss, epoch, head), 0
            else:
                stale += 1
        else:
            best = (train_loss, epoch, head)
        history.append(record)
        if progress is not None:
            progress.update(1)
        if val is not None and stale >= patience:
            break
    assert best is not None
    _, best_epoch, head = best
    train_loss, train_acc = _loss_accuracy(head, x, y)
    val_loss = val_acc = None
    if val is not None:
        val_loss, val_acc = _loss_accuracy(head, *val)
    return {
        "head": head,
        "kind": "softmax",
        "settings": {
            "learning_rate": learning_rate,
            "weight_decay": weight_decay,
            "batch_size": batch_size,
            "max_epochs": epochs,
            "patience": patience,
            "seed": seed,
        },
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "val_loss": val_loss,
        "epochs_run": epoch,
        "best_epoch": best_epoch,
        "history": history,
    }


def _fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    val: tuple[np.ndarray, np.ndarray] | None,
    *,
    epochs: int,
    seed: int,
    progress: Any,
) -> dict[str, Any]:
    """scikit-learn's L-BFGS logistic regression; ``C`` picked by validation loss."""
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        raise MissingExtraError(
            f"the 'logistic' head needs scikit-learn: {install_hint('train')} (or use head='softmax')",
            extra="train",
        ) from exc
    mean, std = _standardiser(x)
    xs = (x - mean) / std
    grid = LOGISTIC_C_GRID if val is not None else (1.0,)
    best: tuple[float, float, LinearHead] | None = None
    history: list[dict[str, float]] = []
    for c in grid:
        model = LogisticRegression(C=c, max_iter=epochs, random_state=seed)
        with warnings.catch_warnings():
            # Hitting the iteration cap is reported in the history (and logged), not as a warning.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(xs, y)
        iterations = int(np.max(model.n_iter_))
        if iterations >= epochs:
            log.info("L-BFGS stopped at the %d-iteration cap for C=%g before converging", epochs, c)
        coef = model.coef_.astype(np.float64)
        intercept = model.intercept_.astype(np.float64)
        # With two classes scikit-learn fits a single logit s (coef_ has one row): two logits -s/2, +s/2
        # give the same probabilities through a softmax.
        if coef.shape[0] == 1 and num_classes == 2:
            coef = np.vstack([-coef / 2, coef / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
        full_w = np.zeros((num_classes, coef.shape[1]))
        full_b = np.zeros(num_classes)
        full_w[model.classes_] = coef
        full_b[model.classes_] = intercept
        head = _fold(full_w, full_b, mean, std)
        train_loss, train_acc = _loss_accuracy(head, x, y)
        record = {
            "C": c,
            "iterations": float(iterations),
            "train_loss": train_loss,
            "train_accuracy": train_acc,
        }
        score = train_loss
        if val is not None:
            val_loss, val_acc = _loss_accuracy(head, *val)
            record.update(val_loss=val_loss, val_accuracy=val_acc)
            score = val_loss
        history.append(record)
        if best is None or score < best[0] - 1e-9:
            best = (score, c, head)
        if progress is not None:
            progress.update(1)
    assert best is not None
    _, chosen_c, head = best
    train_loss, train_acc = _loss_accuracy(head, x, y)
    val_loss = val_acc = None
    if val is not None:
        val_loss, val_acc = _loss_accuracy(head, *val)
    return {
        "head": head,
        "kind": "logistic",
        "settings": {"C": chosen_c, "C_grid": list(grid), "solver": "lbfgs", "seed": seed},
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "val_loss": val_loss,
        "history": history,
    }
