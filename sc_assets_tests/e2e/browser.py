"""Drive Debian's headless Chromium over the DevTools protocol (no browser download, no driver).

Chromium is started as root-safe headless (``--no-sandbox``) with the flags this machine needs
(no background networking / component updates / sync / QUIC, a fresh ``--user-data-dir``),
with remote debugging bound to 127.0.0.1 only. The page is driven over a WebSocket with the
``websockets`` package that dagster-webserver already installs.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from sc_assets_tests.e2e.harness import free_port

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic", "--hide-scrollbars", "--mute-audio",
)


def find_chromium() -> str | None:
    for c in CHROMIUM_CANDIDATES:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and os.access(path, os.X_OK):
            return path
    return None


class Browser:
    def __init__(self, profile_dir: Path, width: int = 1600, height: int = 1000):
        self.profile_dir, self.width, self.height = profile_dir, width, height
        self.proc: subprocess.Popen | None = None
        self._ws = None
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        exe = find_chromium()
        if exe is None:
            raise FileNotFoundError("chromium not installed (scripts/ensure_chromium.sh installs it)")
        port = free_port()
        self.proc = subprocess.Popen(
            [exe, *FLAGS, f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
             f"--user-data-dir={self.profile_dir}", f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        tabs = None
        while time.monotonic() < deadline and tabs is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=1) as r:
                    tabs = [t for t in json.load(r) if t.get("type") == "page"] or None
            except OSError:
                time.sleep(0.2)
        if not tabs:
            self.close()
            raise TimeoutError("chromium DevTools endpoint did not come up")
        self._ws = connect(tabs[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=10)
        self.cmd("Page.enable")
        self.cmd("Runtime.enable")
        self.cmd("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                 deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            self.proc = None

    def cmd(self, method: str, timeout: float = 30.0, **params) -> dict:
        i = next(self._ids)
        self._ws.send(json.dumps({"id": i, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def goto(self, url: str) -> None:
        self.cmd("Page.navigate", url=url)

    def text(self) -> str:
        res = self.cmd("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                       returnByValue=True)
        return res.get("result", {}).get("value", "") or ""

    def wait_for_text(self, needles: list[str], timeout: float = 45.0) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise TimeoutError(f"page never showed {missing}; it shows: {text[:800]!r}")

    def key(self, key: str, alt: bool = False) -> None:
        code = f"Key{key.upper()}"
        for typ in ("keyDown", "keyUp"):
            self.cmd("Input.dispatchKeyEvent", type=typ, key=key, code=code, modifiers=1 if alt else 0,
                     windowsVirtualKeyCode=ord(key.upper()))

    def wheel(self, x: int, y: int, delta_y: float, times: int = 1, ctrl: bool = False) -> None:
        """Mouse-wheel at (x, y): positive delta scrolls down; with Ctrl, zooms a graph out."""
        for _ in range(times):
            self.cmd("Input.dispatchMouseEvent", type="mouseWheel", x=x, y=y, deltaX=0, deltaY=delta_y,
                     modifiers=2 if ctrl else 0)
            time.sleep(0.15)

    def click(self, x: int, y: int) -> None:
        for typ in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.cmd("Input.dispatchMouseEvent", type=typ, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path) -> Path:
        data = self.cmd("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
