"""A server process's start-up objects are frozen out of full garbage collections (idp.heap).

Each case runs in a fresh interpreter: freezing is process-wide and would otherwise apply to the
test runner itself."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from idp.settings import PROJECT_ROOT
from tests.services import idp_env

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys
    from idp import create_app
    from idp.settings import load_settings

    app = create_app() if sys.argv[1] == "serving" else create_app(load_settings())
    frozen = gc.get_freeze_count()
    walked = len(gc.get_objects())  # what a full collection walks now
    status = app.test_client().get("/healthz").status_code
    print(json.dumps({"frozen": frozen, "walked": walked, "healthz": status}))
    """
)


def _start(mode: str, tmp_path: Path) -> dict[str, int]:
    env = idp_env(data_dir=str(tmp_path), secret_key="heap-test-secret-key-of-forty-characters!")
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_served_application_freezes_what_start_up_made(tmp_path: Path) -> None:
    served = _start("serving", tmp_path)
    # Modules, routes, metadata, translations: over a hundred thousand objects that full
    # collections no longer walk (each such walk took 60-100 ms on the development VM).
    assert served["frozen"] > 50_000
    assert served["walked"] < served["frozen"] // 10
    assert served["healthz"] == 200


def test_an_application_built_with_given_settings_freezes_nothing(tmp_path: Path) -> None:
    # Tests and embedders build many applications in one process: none may pin its objects.
    built = _start("embedded", tmp_path)
    assert built["frozen"] == 0
    assert built["walked"] > 50_000
    assert built["healthz"] == 200
