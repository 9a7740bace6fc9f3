"""Tables as medlab shows them: in the terminal (rich), and as Markdown and HTML for reports."""

import html

from rich.console import Console
from rich.table import Table


def print_table(title: str, header: list[str], rows: list[list[str]], console: Console | None = None,
                footer: str = "") -> None:  # fmt: skip
    """Every table medlab prints: a run's test metrics, a comparison, a benchmark."""
    table = Table(title=title, min_width=len(title) + 4)
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console = console or Console()
    console.print(table)
    if footer:
        console.print(footer, soft_wrap=True)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows])


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
