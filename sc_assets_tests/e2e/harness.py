"""Start and stop ``dagster dev`` (webserver + daemon + code server) for end-to-end tests.

The server binds 127.0.0.1 on a free port, with its own DAGSTER_HOME and data root, in its
own process group so that stopping it (SIGTERM to the group, then SIGKILL after a grace
period) leaves no stray process; :meth:`DagsterDev.stop` returns the processes that were
still alive after it, which the tests assert to be empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

REPO = Path(__file__).resolve().parents[2]
DAGSTER = Path(sys.executable).with_name("dagster")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _default_stop_signals() -> None:
    """In the child, before exec: SIGTERM, SIGINT and SIGHUP back to their default action.

    An ignored signal stays ignored across exec. A test session started as a background job
    ignores SIGINT/SIGQUIT, and some launchers also leave SIGTERM ignored (seen: SigIgn of a
    ``nohup ... &`` session included SIGTERM). ``dagster dev`` installs no SIGTERM handler of its
    own, so it inherited the ignored SIGTERM, :meth:`DagsterDev.stop` could not stop it, and
    ``test_stop_leaves_no_process`` failed in such sessions only."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


class DagsterDev:
    def __init__(self, home: Path, data_dir: Path, log_path: Path, port: int | None = None, repo: Path = REPO):
        self.home, self.data_dir, self.log_path, self.repo = home, data_dir, log_path, Path(repo)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.repo / "sc_assets" / "deploy" / "dagster.local.yaml", self.home / "dagster.yaml")
        env = {**os.environ, "DAGSTER_HOME": str(self.home), "SC_ASSETS_DATA_DIR": str(self.data_dir),
               "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port),
             "--log-level", "warning"],
            cwd=self.repo, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_default_stop_signals,
        )
        try:
            self._wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/server_info", timeout=2).ok and self.location_loaded():
                    return
            time.sleep(1.0)
        raise TimeoutError(f"dagster dev not healthy after {timeout_s:.0f} s:\n{self.tail()}")

    def location_loaded(self) -> bool:
        data = self.graphql("""{ workspaceOrError { __typename ... on Workspace { locationEntries {
            name loadStatus locationOrLoadError { __typename ... on PythonError { message stack cause { message stack } } } } } } }""")
        entries = data["workspaceOrError"]["locationEntries"]
        if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
            return False
        errors = [e["locationOrLoadError"] for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
        if errors:
            e = errors[0]
            cause = e.get("cause") or {}
            raise RuntimeError("code location failed to load: " + e["message"] + "".join(e["stack"][-5:])
                               + (cause.get("message") or "") + "".join((cause.get("stack") or [])[-5:]))
        return True

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 30.0) -> dict:
        r = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                          timeout=timeout)
        r.raise_for_status()
        body = r.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def processes(self) -> list[psutil.Process]:
        """The dagster dev process and all its descendants (alive)."""
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def listening_addresses(self) -> set[tuple[str, int]]:
        addrs = set()
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                for c in p.net_connections(kind="inet"):
                    if c.status == psutil.CONN_LISTEN:
                        addrs.add((c.laddr.ip, c.laddr.port))
        return addrs

    def stop(self, grace_s: float = 30.0) -> list[str]:
        """SIGTERM the process group, wait, SIGKILL leftovers. Returns what was still alive after SIGTERM."""
        if self.proc is None:
            return []
        procs = self.processes()
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        gone, alive = psutil.wait_procs(procs, timeout=grace_s)
        leftovers = [f"{p.pid} {p.name()}" for p in alive if p.is_running()]
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self._log:
            self._log.close()
        self.proc = None
        return leftovers

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""
