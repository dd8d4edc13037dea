"""Write one benchmark's section into docs/performance.md, leaving the other sections alone."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_MD = ROOT / "docs" / "performance.md"
HEADER = (
    "# Performance\n\n"
    "Every figure here is written by a script in `bench/` (see `make bench`); each section says "
    "when and how it was measured. Nothing here is a test threshold.\n"
)


def write_section(name: str, markdown: str, path: Path = PERFORMANCE_MD) -> str:
    """Replace (or append) the section between `<!-- bench:NAME:start/end -->` markers."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    body = f"{start}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else HEADER
    if start in text and end in text:
        text = text[: text.index(start)] + body + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text)
    return body
