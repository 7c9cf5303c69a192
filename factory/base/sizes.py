"""Byte counts as people read them (decimal units, as the Hub shows file sizes)."""


def size_text(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}"
    return ""
