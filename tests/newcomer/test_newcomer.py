"""Issue 22's test of the docs: three small apps built from the docs alone, as a newcomer
would (FastAPI with scopes, Flask with sign-in, Django + DRF with linked users), each with
its own tests on the emulator.

Each directory is its own project (its own ``pytest.ini``, so pytest's rootdir is the
project and this suite's conftest files stay out of it); its tests run in a fresh process,
``python -m pytest`` in that directory, with the package of this tree on the path and the
pytest plugin the package installs.  Where the docs did not say enough to write them, the
docs were fixed (see docs/how-to/testing.md: "Testing a SignIn app", "Testing a Django
project").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PROJECTS = ["fastapi_scopes", "flask_signin", "django_drf"]


@pytest.mark.parametrize("project", PROJECTS)
def test_newcomer_project_passes_its_own_tests(project: str) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LWA_", "PYTHON", "DJANGO_", "PYTEST_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=HERE / project, env=env, capture_output=True, text=True, timeout=300)
    out = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, out
    passed = re.search(r"\b(\d+) passed\b", proc.stdout)
    assert passed, out
    assert int(passed.group(1)) >= 5, out
    assert not re.search(r"\b(failed|errors?|skipped)\b", proc.stdout), out
