#!/usr/bin/env python3
"""`python scripts/chaos.py ...` runs `clusterpool.testing.chaos` (see its docstring)."""

from __future__ import annotations

import sys

from clusterpool.testing.chaos import main

if __name__ == "__main__":
    sys.exit(main())
