"""Where the tests find model weights, and the provisioning CLIs that put them there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

#: $MODEL_CACHE_DIR (relative to the repository root when relative), else .cache/models.
MODEL_CACHE_DIR = REPO_ROOT / os.environ.get("MODEL_CACHE_DIR", ".cache/models")


def provision(module: str, *args: str) -> list[str]:
    """Run ``python -m module *args --cache-dir MODEL_CACHE_DIR``: the lines it printed.

    The same command ``make models`` runs; the first call downloads, later ones only
    find the files in place.
    """
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(
        [sys.executable, "-m", module, *args, "--cache-dir", str(MODEL_CACHE_DIR)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()
