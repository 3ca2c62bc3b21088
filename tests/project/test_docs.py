"""The README is the front door and docs/ the rest: the site builds with no warning (every
internal link and anchor resolved), the README stays short and its links land, the
configuration reference is what the code says, and the architecture names modules that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")


def slug(heading: str) -> str:
    """The anchor a Markdown heading gets (Python-Markdown's toc, as mkdocs and forges make it)."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[\s]+", "-", text)


def test_the_site_builds_with_no_warning(tmp_path):
    if not MKDOCS.exists():
        pytest.fail("mkdocs is not installed: run scripts/setup.sh")
    built = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "ARCHITECTURE" / "index.html").exists()


def test_the_readme_is_short_and_every_link_of_it_lands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 400
    links = re.findall(r"\]\(([^)#:]+\.md)(?:#([^)]*))?\)", readme)
    assert len(links) >= 10
    for target, anchor in links:
        page = ROOT / target
        assert page.exists(), target
        if anchor:
            anchors = {slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}
            assert anchor in anchors, f"{target}#{anchor}"


def test_the_check_of_a_link_sees_a_missing_anchor():
    assert slug("Builds on another Docker engine") == "builds-on-another-docker-engine"
    assert slug("Agreed artifacts and `divergent`") == "agreed-artifacts-and-divergent"


def test_the_configuration_reference_is_what_the_code_says():
    checked = subprocess.run([sys.executable, "scripts/config_reference.py", "--check"], cwd=ROOT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_every_module_and_folder_the_architecture_names_exists():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`([\w./-]+\.py|[\w-]+/(?:[\w./-]+)?)`", text))
    assert len(named) > 40
    folders = [ROOT, *(ROOT / part for part in ("pbft", "shared", "builder", "node", "client", "runner", "bench",
                                                "scripts", "deploy")),
               *(ROOT / "builder" / layer for layer in ("plan", "workspace", "engine")),
               *(ROOT / "client" / part for part in ("verbs", "routes", "tables"))]
    missing = [name for name in named if not any((folder / name).exists() for folder in folders)]
    assert missing == []
