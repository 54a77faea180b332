"""The installed product, not the checkout: a wheel built from this tree, installed into a folder of
its own, serves the dashboard (web/ ships inside the package) and loads the default bundle."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from testsupport.browser import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_installed_apart_from_the_checkout_serves_the_dashboard(tmp_path):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("korean_emotion_monitor-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    assert (site / "streamer" / "web" / "index.html").is_file() and (site / "core" / "data" / "default_bundle").is_dir()

    # Run from an empty folder with the installed copy first on the path: nothing of the checkout is used.
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONUNBUFFERED": "1"}
    where = subprocess.run([sys.executable, "-c", "import core, streamer.server as s; print(s.__file__); print(s.dashboard_dir()); "
                            "from core.bundle import resolve_bundle_path; print(resolve_bundle_path('default'))"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert all(line.startswith(str(site)) for line in where.stdout.split()), where.stdout

    port = free_port()
    log = open(tmp_path / "daemon.log", "wb")
    daemon = subprocess.Popen([sys.executable, "-m", "streamer", "run", "--source", "browser", "--port", str(port)],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, page = time.monotonic() + 120, None
        while page is None and time.monotonic() < deadline:
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    page = (response.status, response.read().decode())
            except OSError:
                time.sleep(0.3)
        assert page is not None and page[0] == 200 and "<script" in page[1], page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/app.js", timeout=5) as response:
            assert response.status == 200 and response.read() == (ROOT / "web" / "app.js").read_bytes()
    finally:
        daemon.terminate()
        daemon.wait(30)
        log.close()
