"""Markdown helpers for the security review: values as code spans (placeholders like `<Key.Arn>` are not
HTML there), several values in one table cell separated by line breaks."""


def code(value, in_table: bool = True) -> str:
    text = str(value).replace("`", "'").replace("\n", " ")
    if in_table:
        # GitHub splits table cells on | even inside code spans, unless escaped.
        text = text.replace("|", "\\|")
    return f"`{text}`" if text else ""


def cell(values, in_table: bool = True) -> str:
    return "<br>".join(code(v, in_table) for v in values)


def plain(value) -> str:
    """Free text (descriptions, reasons) in a table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    return [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def inline(values) -> str:
    """Several values in running text (a list item)."""
    return ", ".join(code(v, in_table=False) for v in values)
