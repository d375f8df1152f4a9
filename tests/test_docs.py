"""The documentation site: it builds with --strict, the tables it copies from the README (the
differences from RedisCluster, the options) are the README's, and every ```python example on
it runs against the real session cluster.

Examples are written for a local cluster on 127.0.0.1:7000-7005 (what `scripts/cluster.py
start --base-port 7000` gives); before one runs, each address `127.0.0.1:700N` (also spelt
`"127.0.0.1", 700N` or `host="127.0.0.1", port=700N`) becomes the session cluster's N-th node.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOCS_PACKAGES = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python")

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)
# fence languages allowed on the site; Python must be spelt "python" so the examples are found
LANGUAGES = {"python", "sh", "text", ""}
ADDRESS = re.compile(r'127\.0\.0\.1(:|", |", port=)(700\d)\b')


def _docs_missing() -> str | None:
    for name in DOCS_PACKAGES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return name
    return None


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _fences(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(page.read_text())]


def _examples() -> list[pytest.param]:
    out = []
    for page in _pages():
        blocks = [code for lang, code in _fences(page) if lang == "python"]
        for i, code in enumerate(blocks, 1):
            name = f"{page.relative_to(DOCS).with_suffix('')}-{i}"
            out.append(pytest.param(code, id=name))
    return out


def _table_after(text: str, marker: str) -> list[str]:
    """The first markdown table after `marker`: its rows, as written."""
    rest = text[text.index(marker):].splitlines()
    rows: list[str] = []
    for line in rest:
        if line.startswith("|"):
            rows.append(line.rstrip())
        elif rows:
            break
    return rows


def _localise(code: str, startup_nodes: list[tuple[str, int]]) -> str:
    def sub(m: re.Match[str]) -> str:
        host, port = startup_nodes[int(m.group(2)) - 7000]
        return f"{host}{m.group(1)}{port}"

    return ADDRESS.sub(sub, code)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once with --strict (warnings, broken links and references fail it; not
    --quiet, which hides the warnings from the strict count)."""
    missing = _docs_missing()
    if missing:
        pytest.skip(f"{missing} is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict",
         "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    if proc.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}")
    return out


def _inventory(site: Path) -> set[str]:
    """The object names the API reference documents (mkdocstrings' objects.inv)."""
    header, _, body = site.joinpath("objects.inv").read_bytes().partition(b"zlib.\n")
    assert header.startswith(b"# Sphinx inventory version 2")
    return {line.split(" ", 1)[0] for line in zlib.decompress(body).decode().splitlines()}


def test_site_builds_with_strict(site: Path) -> None:
    assert (site / "reference" / "client" / "index.html").is_file()


@pytest.mark.parametrize("module", ["clusterpool", "clusterpool.asyncio", "clusterpool.testing"])
def test_reference_documents_every_export(site: Path, module: str) -> None:
    documented = _inventory(site)
    exports = importlib.import_module(module).__all__
    missing = [name for name in exports if f"{module}.{name}" not in documented]
    assert not missing, f"add these {module} exports to a docs/reference page: {missing}"


@pytest.mark.parametrize(("page", "readme_marker", "page_marker"), [
    ("migrating.md", "Where we deliberately differ", "Where we deliberately differ"),
    ("failures.md", "## Options", "## Every option"),
    ("harness.md", "Figures of a full run", "Figures of a full run"),
])
def test_table_is_the_readmes(page: str, readme_marker: str, page_marker: str) -> None:
    readme = _table_after((ROOT / "README.md").read_text(), readme_marker)
    copy = _table_after((DOCS / page).read_text(), page_marker)
    assert len(readme) > 3
    assert copy == readme, f"docs/{page}'s table after {page_marker!r} differs from README.md's: copy it"


def test_code_fences_use_known_languages() -> None:
    odd = [(p.name, lang) for p in _pages() for lang, _ in _fences(p) if lang not in LANGUAGES]
    assert not odd, f"spell Python fences 'python' (so their examples run), others sh/text: {odd}"


def test_every_page_is_in_the_nav() -> None:
    nav = set(re.findall(r":\s*(\S+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(), re.M))
    missing = [str(p.relative_to(DOCS)) for p in _pages() if str(p.relative_to(DOCS)) not in nav]
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


@pytest.mark.parametrize("code", _examples())
def test_example_runs(code: str, cluster) -> None:
    source = _localise(code, cluster.startup_nodes)
    namespace = {"__name__": "__docs_example__"}
    exec(compile(source, "<docs example>", "exec"), namespace)
