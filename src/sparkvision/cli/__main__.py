"""``python -m sparkvision.cli``: the same as the ``sparkvision`` command."""

from . import main

main()
