"""Rendering only: rich tables and tqdm bars, all on stderr unless they are the result."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def notice(message: str) -> None:
    err.print(message, markup=False)


def gradcheck_table(result) -> Table:
    dropout = f"dropout {result.dropout:g} with a fixed mask" if result.dropout else "dropout off"
    table = Table(title="Gradient check: analytic vs centered finite differences (float64)",
                  caption=f"eps {result.eps:g}, tolerance {result.tol:g} on max relative error; "
                          f"{dropout}; gradient clipping off",
                  title_justify="left", caption_justify="left")
    for col, justify in (("model", "left"), ("parameter", "left"), ("shape", "left"),
                         ("checked", "right"), ("max rel err", "right"), ("", "left")):
        table.add_column(col, justify=justify)
    for r in result.rows:
        table.add_row(r.model, r.name, "×".join(map(str, r.shape)), str(r.checked),
                      f"{r.max_rel_err:.1e}", "[green]pass[/]" if r.passed else "[bold red]FAIL[/]")
    return table


def print_result_table(table: Table) -> None:
    out.print(table)


def progress(total: int | None, desc: str, quiet: bool, unit: str = "step"):
    """A tqdm bar on stderr, off when quiet or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=True if quiet else None, dynamic_ncols=True)
