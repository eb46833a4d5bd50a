"""What every benchmark here needs: run a command, find the base image."""

from __future__ import annotations

import subprocess
import sys


def sh(*args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run a command; a failure ends the benchmark with its output, not a traceback."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def resolve_base_image() -> str:
    """The image the base_image role resolved: debian:trixie-slim, else the bootstrapped one."""
    proc = sh(
        "docker",
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        "reference=debian:trixie-slim",
        "--filter",
        "reference=shipyard/base:trixie",
    )
    names = proc.stdout.split()
    if not names:
        sys.exit("no base image: run `make up` first")
    return "debian:trixie-slim" if "debian:trixie-slim" in names else names[0]
