"""The `clusterpool` console script's entry point (pyproject's [project.scripts]).

The command needs only the library (argparse), so a plain `pip install redis-clusterpool`
gives a working `clusterpool`; rich (the `cli` extra) only draws nicer tables.
"""

from __future__ import annotations

from .cli import main

__all__ = ["main"]
