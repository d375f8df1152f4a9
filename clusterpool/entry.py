"""The `clusterpool` console script: runs the CLI, or says how to install it when its extras are missing.

click and rich are the `cli` extra, not dependencies of the library; a plain
`pip install redis-clusterpool` must still give a `clusterpool` command that explains
itself in one line instead of a traceback.
"""

from __future__ import annotations

import sys

INSTALL_HINT = "pip install 'redis-clusterpool[cli]'"
EXIT_MISSING_EXTRA = 2  # a usage problem, as click's own usage errors


def main() -> None:
    """Run `clusterpool.cli.main`, or print one line naming the missing package and exit 2."""
    try:
        import click  # noqa: F401  (only checking that the extra is installed)
        import rich  # noqa: F401
    except ImportError as e:
        missing = getattr(e, "name", None) or "click"
        print(f"clusterpool: the command line needs {missing}, which is not installed: {INSTALL_HINT}",
              file=sys.stderr)
        raise SystemExit(EXIT_MISSING_EXTRA) from None
    from .cli import main as cli

    cli()
