"""The build side is a library in three layers (docs/ARCHITECTURE.md): `builder/plan/` compiles a
build order and the commit's spec into what to run, with no Docker and no git; `builder/workspace/`
holds the mirror, the checkout, caches, artifacts and the log; `builder/engine/` is the one place
that speaks the Docker SDK. The node's driver and the action runner call it; it never reaches back,
so it can be read, tested and changed without the protocol."""

from pathlib import Path

from tests.support.imports import imported_names

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "builder"


def imported(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` (a file of the tree at `root`) imports, named absolutely (tests/support/imports.py)."""
    return imported_names(path.read_text(), ".".join(path.relative_to(root).with_suffix("").parts[:-1]))


def under(names: set[str], *packages: str) -> list[str]:
    return sorted(name for name in names if any(name == top or name.startswith(f"{top}.") for top in packages))


def offending(folder: Path, *packages: str, root: Path = ROOT) -> dict[str, list[str]]:
    found = {str(path.relative_to(root)): under(imported(path, root), *packages) for path in sorted(folder.rglob("*.py"))}
    return {path: names for path, names in found.items() if names}


def test_the_builder_imports_nothing_of_the_node_or_the_client():
    assert offending(BUILDER, "node", "client", "runner") == {}


def test_the_plan_imports_no_docker_no_git_and_no_layer_above_it():
    assert offending(BUILDER / "plan", "docker", "git", "requests", "builder.workspace", "builder.engine",
                     "builder.executor") == {}


def test_the_workspace_does_not_speak_to_the_engine():
    assert offending(BUILDER / "workspace", "docker", "builder.engine", "builder.executor") == {}


def test_the_engine_imports_nothing_of_the_workspace_or_of_what_runs_it():
    # What a build reads and leaves on the node reaches the engine through protocols of its own
    # (builder/engine/transfer.py's ArtifactsOut, steps.py's PipelineCache) or as plan values.
    assert offending(BUILDER / "engine", "builder.workspace", "builder.run", "builder.executor") == {}


def test_the_engine_check_sees_the_workspace_however_it_is_imported(tmp_path):
    engine = tmp_path / "builder" / "engine"
    engine.mkdir(parents=True)
    sources = {
        "plain.py": "from builder.workspace.artifacts import ArtifactCopy\n",
        "module.py": "import builder.workspace.log\n",
        "package.py": "from builder.workspace import cacherun\n",
        "relative.py": "from ..workspace.cacherun import CacheRun\n",
        "late.py": "def copy():\n    from builder.workspace.caches import CacheStore\n",
        "typing.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from builder.workspace.fetch import Fetched\n",
        "fine.py": "from builder.plan.cachemounts import CacheMounts\nfrom builder.workspaces import other\n",
    }
    for name, source in sources.items():
        (engine / name).write_text(source)
    found = offending(engine, "builder.workspace", root=tmp_path)
    assert sorted(found) == sorted(f"builder/engine/{name}" for name in sources if name != "fine.py")
    assert found["builder/engine/relative.py"] == ["builder.workspace.cacherun", "builder.workspace.cacherun.CacheRun"]


def test_the_run_carries_out_a_compiled_plan_and_plans_nothing_itself():
    # builder/plan/compilebuild.py compiles a plan of buildplan.py's values; builder/run.py takes that plan
    # and reads the secrets it names.
    plan_modules = {name for name in under(imported(BUILDER / "run.py"), "builder.plan") if name.count(".") == 2}
    assert plan_modules == {"builder.plan.buildplan", "builder.plan.secrets"}


def test_the_checks_see_what_they_look_for():
    # The driver imports the store; the executor imports the engine; a relative import is resolved.
    assert "node.storage" in under(imported(ROOT / "node" / "driver.py"), "node")
    assert under(imported(BUILDER / "executor.py"), "builder.engine") != []
    assert under({"builder.executor", "nodes.x"}, "node") == []


def test_the_runner_uses_the_builder_through_its_entry_only():
    imports = {name for path in (ROOT / "runner").rglob("*.py") for name in imported(path)}
    assert under(imports, "node") == []
    assert [name for name in under(imports, "builder") if name.count(".") > 1] == []
    assert under(imports, "builder") != []  # it does use the entry: the check looks at something


def test_only_the_engine_speaks_the_docker_sdk():
    outside = {path: names for path, names in offending(BUILDER, "docker", "requests").items()
               if not path.startswith("builder/engine/")}
    assert outside == {}
