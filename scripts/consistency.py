#!/usr/bin/env python3
"""`python scripts/consistency.py ...` runs `clusterpool.testing.consistency` (see its docstring)."""

from __future__ import annotations

import sys

from clusterpool.testing.consistency import main

if __name__ == "__main__":
    sys.exit(main())
