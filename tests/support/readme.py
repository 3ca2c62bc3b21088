"""The README's and the docs' own text for tests that run what they say: a section, and the
code blocks in it. A section is found by its `## ` heading in README.md or any page of docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def section(title: str) -> str:
    """The text of `## title` up to the next `## ` heading (its `###` subsections included)."""
    for page in PAGES:
        text = page.read_text()
        start = text.find(f"\n## {title}\n")
        if start != -1:
            end = text.find("\n## ", start + 1)
            return text[start:] if end == -1 else text[start:end]
    raise ValueError(f"no section {title!r} in README.md or docs/")


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)
