"""The build spec's reference page and its JSON Schema are what the code says
(scripts/spec_reference.py --check), and the documentation site serves the schema, so that
an editor can point `# yaml-language-server: $schema=...` at it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from builder.plan.spec import BuildSpec
from shared.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = Path(sys.executable).with_name("mkdocs")
SCHEMA = ROOT / "docs" / "schema" / "pbft-ci.schema.json"


def test_the_pipeline_reference_and_the_json_schema_are_what_the_code_says():
    checked = subprocess.run([sys.executable, "scripts/spec_reference.py", "--check"], cwd=ROOT,
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_published_schema_is_the_declarations():
    published = json.loads(SCHEMA.read_text())
    assert published == json_schema(BuildSpec, title="pbft-ci build spec (.pbft-ci.yml)")
    assert published["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_site_serves_the_schema(tmp_path):
    if not MKDOCS.exists():
        pytest.fail("mkdocs is not installed: run scripts/setup.sh")
    built = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "schema" / "pbft-ci.schema.json").read_text() == SCHEMA.read_text()
    assert (tmp_path / "site" / "pipeline-reference" / "index.html").exists()
