"""Tables for people: a title, columns and rows of text, rendered as plain aligned text.

`print(client.topology())` and the `clusterpool` command draw the same `Table`; the
command uses rich's boxes when rich is installed (the `cli` extra) and `plain()` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Table:
    """Rows of cells under named columns; `ends` holds the row indexes that close a section."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...] = ()
    ends: frozenset[int] = field(default_factory=frozenset)


def table(title: str, columns: Iterable[str], sections: Iterable[Iterable[Iterable[str]]]) -> Table:
    """A Table from groups of rows (a shard's nodes, say); each group closes a section."""
    rows: list[tuple[str, ...]] = []
    ends: set[int] = set()
    for group in sections:
        rows.extend(tuple(cell for cell in row) for row in group)
        if rows:
            ends.add(len(rows) - 1)
    return Table(title, tuple(columns), tuple(rows), frozenset(ends))


def plain(t: Table) -> str:
    """The table as aligned text: title, header, a rule, the rows (a blank-free rule between sections)."""
    widths = [len(c) for c in t.columns]
    for row in t.rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Iterable[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    out = [t.title, line(t.columns), rule]
    for i, row in enumerate(t.rows):
        out.append(line(row))
        if i in t.ends and i != len(t.rows) - 1:
            out.append(rule)
    return "\n".join(out)


def slot_ranges(ranges: Iterable[tuple[int, int]]) -> str:
    """`0-5460, 10923` for slot ranges (a single slot without the dash); `-` for none."""
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in ranges) or "-"


def ms(v: float | None) -> str:
    """Milliseconds to 3 decimals, `-` when unknown."""
    return "-" if v is None else f"{v:.3f}"
