"""The task registry: which class serves a model, chosen by the ``task`` its ``sparkvision.json`` names.

A task is one module in this package that decorates its class with :func:`register_task`; the table
:data:`TASK_MODULES` says which module registers which task name, so a model's task is imported only
when a model of that task is loaded (and the classification path imports no other task). Adding a
task is one new module plus its line in that table.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ModelFormatError

__all__ = ["TASK_MODULES", "register_task", "task_class", "task_names"]

#: task name (as in ``sparkvision.json``) → the module that registers its class.
TASK_MODULES: dict[str, str] = {
    "classification": "sparkvision.tasks.classification",
    "zero-shot": "sparkvision.tasks.zero_shot",
    "captioning": "sparkvision.tasks.captioning",
}

#: task name → its class (an :class:`~sparkvision.tasks.base.ImageTask` subclass).
_TASKS: dict[str, type[Any]] = {}
T = TypeVar("T", bound=type[Any])


def register_task(name: str) -> Callable[[T], T]:
    """Class decorator: serve models whose spec says ``task == name`` with this class."""

    def decorate(cls: T) -> T:
        cls.task = name
        _TASKS[name] = cls
        return cls

    return decorate


def task_class(name: str) -> type[Any]:
    """The class registered for task ``name`` (importing its module on first use)."""
    if name not in _TASKS and name in TASK_MODULES:
        importlib.import_module(TASK_MODULES[name])
    try:
        return _TASKS[name]
    except KeyError:
        raise ModelFormatError(
            f"unknown task {name!r} in sparkvision.json; this version knows {', '.join(task_names())}"
        ) from None


def task_names() -> list[str]:
    return sorted(set(TASK_MODULES) | set(_TASKS))
