"""Debian packages the topology tests run (PgBouncer, pg_auto_failover), installed when missing.

The tests install what they need themselves, as root with apt-get, the way .ci/run starts
PostgreSQL: a fresh machine has neither package. Without root (a developer's laptop) a
missing package fails the test with the command to run; it is never skipped quietly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

INSTALL_TIMEOUT_SECONDS = 600


def ensure_installed(binary: str, package: str) -> str:
    """The path of ``binary`` (a name on PATH or an absolute path), installing ``package``."""
    found = _find(binary)
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(f"{binary} is missing: run `apt-get install {package}` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    if _run(install, env).returncode != 0:
        # A machine whose package lists are stale or absent: read them once, then again.
        _run(["apt-get", "update", "-qq"], env)
        result = _run(install, env)
        if result.returncode != 0:
            raise RuntimeError(f"apt-get install {package} failed:\n{result.stdout[-2000:]}")
    found = _find(binary)
    if not found:
        raise RuntimeError(f"{package} installed but {binary} is not there")
    return found


def _find(binary: str) -> str | None:
    if os.path.isabs(binary):
        return binary if Path(binary).exists() else None
    return shutil.which(binary)


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_SECONDS,
        check=False,
    )
