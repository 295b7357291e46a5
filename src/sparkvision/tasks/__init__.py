"""Tasks: what a model does with images, one module per task, chosen by the model's ``task``.

* :mod:`.classification` — :class:`~sparkvision.Classifier`, fixed labels;
* :mod:`.zero_shot` — :class:`ZeroShotClassifier`, CLIP with labels chosen per request;
* :mod:`.base` / :mod:`.labelling` — what they share; :mod:`.registry` — which class serves which task.

:func:`load` returns the right one for a model name or directory.
"""

from .base import DEFAULT_BATCH_SIZE, ImageTask, for_model, load
from .registry import register_task, task_class

__all__ = ["DEFAULT_BATCH_SIZE", "ImageTask", "for_model", "load", "register_task", "task_class"]
