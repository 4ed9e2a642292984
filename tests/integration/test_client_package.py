"""The client installs alone: its wheel holds `audio_client` and `contracts` only, and it
runs in a virtual environment that has its dependencies (httpx, msgspec) and nothing of
the services."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import venv
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.support.servers import REPO_ROOT

CLIENT_PROJECT = REPO_ROOT / "client"
#: What the client's code may import besides the standard library.
ALLOWED_IMPORTS = {"audio_client", "contracts", "httpx", "msgspec"}


def closure(names: list[str]) -> set[str]:
    """The installed distributions `names` need, recursively (extras left out)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        dist = metadata.distribution(todo.pop())
        name = dist.metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def top_level_paths(distribution: str) -> set[Path]:
    dist = metadata.distribution(distribution)
    files = [Path(str(f)) for f in dist.files or []]
    return {
        Path(str(dist.locate_file(f.parts[0])))
        for f in files
        if not f.parts[0].endswith((".dist-info", ".egg-info")) and f.parts[0] != ".."
    }


def test_the_client_imports_nothing_but_its_dependencies() -> None:
    for module in (REPO_ROOT / "audio_client").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            foreign = roots - ALLOWED_IMPORTS - set(sys.stdlib_module_names)
            assert not foreign, f"{module.name} imports {foreign}"


def test_the_wheel_installs_and_runs_without_the_services(tmp_path: Path) -> None:
    # Build from a copy, so that the checkout gets no build/ or egg-info.
    project = tmp_path / "client"
    shutil.copytree(CLIENT_PROJECT, project, symlinks=False)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(wheels), str(project)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("*.whl")
    packages = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {p for p in packages if not p.endswith(".dist-info")} == {"audio_client", "contracts"}

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # The wheel unpacked as pip would, and only its dependencies beside it.
    zipfile.ZipFile(wheel).extractall(purelib)
    deps = tmp_path / "deps"
    deps.mkdir()
    for distribution in closure(["httpx", "msgspec"]):
        for path in top_level_paths(distribution):
            (deps / path.name).symlink_to(path)
    (Path(purelib) / "deps.pth").write_text(f"{deps}\n")

    probe = (
        "import importlib.util, audio_client, audio_client.cli;"
        "print(importlib.util.find_spec('ingest_service'), importlib.util.find_spec('litestar'))"
    )
    ran = subprocess.run(
        [python, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["None", "None"]
    helped = subprocess.run(
        [python, "-m", "audio_client", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert helped.returncode == 0, helped.stderr
    for command in ("submit", "status", "result", "list", "cancel", "delete", "verify-webhook"):
        assert command in helped.stdout
