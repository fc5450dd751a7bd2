"""Server processes for the benchmark: started on 127.0.0.1, measured from /proc, always stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str, timeout: float = 60.0) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.command, "--port", str(self.port)],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}")
            try:
                httpx.post(self.url + ready_path, json={}, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer in {timeout}s; see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # The server leads its own session: SIGTERM reaches uvicorn's workers too.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def pids(self) -> list[int]:
        """The server and its worker processes."""
        assert self.process is not None
        family = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid in family:
                family.append(int(entry.name))
        return family

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / CLOCK_TICKS

    def peak_rss_mb(self) -> float:
        """The largest peak resident set (VmHWM) among the server's processes."""
        peak = 0
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        return peak / 1024

    def loaded_modules(self) -> dict[str, bool]:
        """Whether uvloop and httptools are really in use: their extensions are mapped."""
        maps = "".join(Path(f"/proc/{pid}/maps").read_text(errors="replace") for pid in self.pids())
        return {"uvloop": "uvloop/loop." in maps, "httptools": "httptools/parser/" in maps}


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """``command`` run on the given CPUs only (``taskset``), or as it is."""
    return ["taskset", "-c", cpus, *command] if cpus else command


def creditgate_command(workers: int = 1) -> list[str]:
    command = [str(Path(sys.executable).parent / "creditgate"), "serve", "--host", "127.0.0.1"]
    return [*command, "--workers", str(workers)] if workers != 1 else command


def reference_command() -> list[str]:
    return [sys.executable, "-m", "bench.reference"]


def bare_command() -> list[str]:
    return [sys.executable, "-m", "bench.bare"]
