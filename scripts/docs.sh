#!/usr/bin/env bash
# The documentation site (mkdocs.yml, docs/):
#   scripts/docs.sh          serve it at http://127.0.0.1:8000 with live reload
#   scripts/docs.sh build    build it with --strict into site/ (extra arguments go to mkdocs;
#                            not -q: it hides the warnings --strict counts)
# Needs the docs (or dev) extra: .venv/bin/pip install -e '.[docs]'
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if ! "$PY" -c "import mkdocs, material, mkdocstrings" >/dev/null 2>&1; then
    echo "docs.sh: mkdocs, mkdocs-material or mkdocstrings missing; run: $PY -m pip install -e '.[docs]'" >&2
    exit 2
fi
export NO_MKDOCS_2_WARNING=1

case "${1:-serve}" in
    serve) shift || true; exec "$PY" -m mkdocs serve -a 127.0.0.1:8000 "$@" ;;
    build) shift; exec "$PY" -m mkdocs build --strict "$@" ;;
    *) echo "usage: scripts/docs.sh [serve|build] [mkdocs options]" >&2; exit 2 ;;
esac
