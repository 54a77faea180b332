"""Helpers for the dashboard's browser tests: a real daemon on a free loopback port, and Debian's
headless Chromium driven by Playwright (never `playwright install`: the browser comes from apt).

The daemon runs as a subprocess (`python -m streamer ...`) exactly as a user starts it, so a test
can kill it with SIGKILL and start it again on the same port to check the page's resume.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream",  # a synthetic microphone (a beep) instead of real hardware
]
ALLOW_MIC = "--use-fake-ui-for-media-stream"  # answers the microphone prompt with "allow"


def require_chromium() -> str:
    import pytest

    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed: apt-get install -y chromium fonts-noto-cjk")
    return CHROMIUM


def launch(playwright, allow_mic: bool = True):
    """Headless Chromium; without `allow_mic` the microphone prompt is refused, as a user might."""
    return playwright.chromium.launch(
        executable_path=require_chromium(), args=CHROMIUM_ARGS + ([ALLOW_MIC] if allow_mic else [])
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """`python -m streamer ARGS --port PORT` on loopback, its output in a log file."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.args = args
        self.port = port
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, timeout_s: float = 120.0) -> "Daemon":
        env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamer", *self.args, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"daemon did not serve {self.url} within {timeout_s} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: a crash, as far as any client can tell."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a clean shutdown that finishes the recording), SIGKILL if it hangs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def __enter__(self) -> "Daemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def shot(page, name: str) -> Path:
    """Save a screenshot under tests/artifacts/ (git-ignored) for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path

