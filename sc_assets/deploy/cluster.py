"""A local cluster for development and tests: ``make cluster-up`` / ``make cluster-down``.

Starts, on 127.0.0.1 with free ports and all state under one folder (default ``.cluster/``,
git-ignored), the services of the ``cluster`` profile (docs/CLUSTER.md):

* PostgreSQL (``initdb`` + ``pg_ctl``; run as the ``postgres`` user when we are root, since
  PostgreSQL refuses to run as root) — Dagster's run/event/schedule storage;
* Redis (``redis-server``; ``apt-get install -y redis-server`` when missing and we are root) —
  the Celery broker and result backend;
* moto's standalone S3 server (``python -m moto.server``) with the lake bucket;
* N Celery workers (``celery -A dagster_celery.app worker``, default 2), each one process
  with one pool child, importing the project's code location.

It writes ``<dir>/env.sh`` (mode 0600: it holds the generated passwords) that ``make dev``,
``sc-assets`` and the tests source, and ``<dir>/dagster_home/dagster.yaml`` from
``dagster.cluster.yaml`` (``env:`` references only). Credentials come from the environment
when set (``SC_ASSETS_PG_PASSWORD``, ``SC_ASSETS_REDIS_PASSWORD``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``), otherwise they are generated once and kept in ``env.sh``; they
are never printed. ``down`` stops exactly the processes recorded in ``<dir>/state.json``.

    python -m sc_assets.deploy.cluster up [--dir .cluster] [--workers 2]
    python -m sc_assets.deploy.cluster down [--dir .cluster]
    python -m sc_assets.deploy.cluster status
    python -m sc_assets.deploy.cluster backfill --start 2024-01-02 --end 2024-02-09 [--select raw,staging,marts]
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import click

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_DIR = PROJECT_DIR / ".cluster"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin",
               "/usr/local/bin", "/usr/bin")
BUCKET = "sc-assets-lake"
#: Layers the tests and the benchmark run by default (the ingestion + SQL part of the chain).
RUN_LAYERS_DEFAULT = ("raw", "staging", "marts")
LAKE_PREFIX = "lake"

CELERY_CONFIG_MODULE = '''"""Celery settings for the sc_assets workers, read from the environment (no secret here)."""
import os

broker_url = os.environ["SC_ASSETS_CELERY_BROKER"]
result_backend = os.environ["SC_ASSETS_CELERY_BACKEND"]
broker_connection_retry_on_startup = True
worker_prefetch_multiplier = 1
# A worker process that dies mid-step (OOM, SIGKILL, node loss) puts its task back on the queue
# and another worker reruns the step; without this dagster-celery waits forever for the rest.
task_acks_late = True
task_reject_on_worker_lost = True
broker_transport_options = {"visibility_timeout": 43200, "max_retries": 3, "interval_start": 0,
                            "interval_step": 0.2, "interval_max": 0.5}
'''


class ClusterError(RuntimeError):
    """A service of the local cluster could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout_s: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(0.2)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    raise ClusterError(f"{what} did not become ready within {timeout_s:.0f} s{tail}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _find_pg_bin(name: str) -> str | None:
    for d in PG_BIN_DIRS:
        p = Path(d) / name
        if p.exists():
            return str(p)
    return shutil.which(name)


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env)


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary; installs the Debian package when missing and we are root."""
    found = _find_pg_bin(name)
    if found is None and _is_root() and shutil.which("apt-get"):
        _apt_install("postgresql")
        found = _find_pg_bin(name)
    if found is None:
        raise ClusterError(f"PostgreSQL's {name} not found (looked in {', '.join(PG_BIN_DIRS)}): "
                           "sudo apt-get install -y postgresql")
    return found


def _is_root() -> bool:
    return os.geteuid() == 0


def ensure_redis_server() -> str:
    """Path of ``redis-server``; installs the Debian package when missing and we are root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if not _is_root() or not shutil.which("apt-get"):
        raise ClusterError("redis-server is not installed: sudo apt-get install -y redis-server")
    _apt_install("redis-server")
    found = shutil.which("redis-server")
    if not found:
        raise ClusterError("apt-get installed redis-server but it is not on PATH")
    return found


def _as_pg_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if _is_root() else cmd


def _chown_pg(path: Path) -> None:
    if _is_root():
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(path, pw.pw_uid, pw.pw_gid)


@dataclass
class Cluster:
    """State of a local cluster folder (ports, pids, credentials in env.sh)."""

    dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    # ---- files ---------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def env_file(self) -> Path:
        return self.dir / "env.sh"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.dir / "dagster_home"

    @property
    def pg_data(self) -> Path:
        return self.dir / "pg" / "data"

    def save(self) -> None:
        self.state_file.write_text(json.dumps(
            {"ports": self.ports, "pids": self.pids, "versions": self.versions}, indent=2))

    @classmethod
    def load(cls, directory: Path) -> Cluster:
        c = cls(Path(directory).resolve())
        if c.state_file.exists():
            data = json.loads(c.state_file.read_text())
            c.ports, c.pids, c.versions = data.get("ports", {}), data.get("pids", {}), data.get("versions", {})
        return c

    def env(self) -> dict[str, str]:
        """The variables of ``env.sh`` (read back; includes secrets: never print this)."""
        out: dict[str, str] = {}
        if self.env_file.exists():
            for line in self.env_file.read_text().splitlines():
                if line.startswith("export "):
                    k, _, v = line[len("export "):].partition("=")
                    out[k] = shlex.split(v)[0] if v else ""
        return out

    def process_env(self) -> dict[str, str]:
        """``os.environ`` plus env.sh, for the processes we start and for tests."""
        return {**os.environ, **self.env()}

    # ---- credentials ---------------------------------------------------------------------
    def _secret(self, var: str, old: dict[str, str], default: str | None = None) -> str:
        return os.environ.get(var) or old.get(var) or default or secrets.token_urlsafe(18)

    def write_env(self, data_dir: Path) -> dict[str, str]:
        old = self.env()
        pg_user = os.environ.get("SC_ASSETS_PG_USER") or old.get("SC_ASSETS_PG_USER") or "sc_assets"
        pg_password = self._secret("SC_ASSETS_PG_PASSWORD", old)
        redis_password = self._secret("SC_ASSETS_REDIS_PASSWORD", old)
        key_id = self._secret("AWS_ACCESS_KEY_ID", old, "sc-assets-dev")
        secret_key = self._secret("AWS_SECRET_ACCESS_KEY", old)
        rp = self.ports["redis"]
        env = {
            "SC_ASSETS_PROFILE": "cluster",
            "DAGSTER_HOME": str(self.dagster_home),
            "SC_ASSETS_DATA_DIR": str(data_dir),
            "SC_ASSETS_PG_HOST": "127.0.0.1",
            "SC_ASSETS_PG_PORT": str(self.ports["postgres"]),
            "SC_ASSETS_PG_USER": pg_user,
            "SC_ASSETS_PG_PASSWORD": pg_password,
            "SC_ASSETS_PG_DB": "dagster",
            "SC_ASSETS_REDIS_PASSWORD": redis_password,
            "SC_ASSETS_CELERY_BROKER": f"redis://:{redis_password}@127.0.0.1:{rp}/0",
            "SC_ASSETS_CELERY_BACKEND": f"redis://:{redis_password}@127.0.0.1:{rp}/1",
            "SC_ASSETS_LAKE_URI": f"s3://{BUCKET}/{LAKE_PREFIX}",
            "SC_ASSETS_S3_ENDPOINT": f"http://127.0.0.1:{self.ports['s3']}",
            "AWS_ACCESS_KEY_ID": key_id,
            "AWS_SECRET_ACCESS_KEY": secret_key,
            "AWS_REGION": "us-east-1",
            "PYTHONPATH": str(self.dir / "celery"),
        }
        lines = ["# sc_assets local cluster (make cluster-up). Holds passwords: keep it private (0600).",
                 "# Use: source .cluster/env.sh   (then make dev, sc-assets, pytest -m cluster)"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.chmod(self.env_file, 0o600)
        return env

    # ---- services ------------------------------------------------------------------------
    def start_postgres(self, env: dict[str, str]) -> None:
        port = self.ports["postgres"]
        pg_dir = self.pg_data.parent
        pg_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(pg_dir, 0o755)
        _chown_pg(pg_dir)
        sock = pg_dir / "sock"
        sock.mkdir(exist_ok=True)
        _chown_pg(sock)
        log = self.logs / "postgres.log"
        log.touch()
        _chown_pg(log)
        if not (self.pg_data / "PG_VERSION").exists():
            pwfile = pg_dir / ".pw"
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(env["SC_ASSETS_PG_PASSWORD"] + "\n")
            _chown_pg(pwfile)
            try:
                out = subprocess.run(
                    _as_pg_user([_pg_bin("initdb"), "-D", str(self.pg_data), "-U", env["SC_ASSETS_PG_USER"],
                                 f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"]),
                    capture_output=True, text=True)
            finally:
                pwfile.unlink(missing_ok=True)
            if out.returncode != 0:
                raise ClusterError(f"initdb failed: {out.stderr[-2000:]}")
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        out = subprocess.run(
            _as_pg_user([_pg_bin("pg_ctl"), "-D", str(self.pg_data), "-l", str(log), "-o", opts, "-w", "-t", "60",
                         "start"]), capture_output=True, text=True)
        if out.returncode != 0:
            raise ClusterError(f"PostgreSQL did not start: {out.stderr[-1500:]}\n{log.read_text()[-1500:]}")
        pidline = (self.pg_data / "postmaster.pid").read_text().splitlines()[0]
        self.pids["postgres"] = int(pidline)
        self.save()
        import psycopg2

        def connect(db):
            return psycopg2.connect(host="127.0.0.1", port=port, user=env["SC_ASSETS_PG_USER"],
                                    password=env["SC_ASSETS_PG_PASSWORD"], dbname=db, connect_timeout=3)

        con = connect("postgres")
        con.autocommit = True
        try:
            with con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (env["SC_ASSETS_PG_DB"],))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{env["SC_ASSETS_PG_DB"]}"')
                cur.execute("SHOW server_version")
                self.versions["postgres"] = cur.fetchone()[0]
        finally:
            con.close()

    def start_redis(self, env: dict[str, str]) -> None:
        redis_server = ensure_redis_server()
        rdir = self.dir / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        conf = rdir / "redis.conf"
        pidfile = rdir / "redis.pid"
        text = "\n".join([
            f"port {self.ports['redis']}", "bind 127.0.0.1", "protected-mode yes", "daemonize yes",
            f"pidfile {pidfile}", f"logfile {self.logs / 'redis.log'}", f"dir {rdir}", 'save ""',
            "appendonly no", f"requirepass {env['SC_ASSETS_REDIS_PASSWORD']}",
        ]) + "\n"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        subprocess.run([redis_server, str(conf)], check=True, capture_output=True)
        _wait(lambda: pidfile.exists() and _port_open(self.ports["redis"]), 20, "redis-server",
              self.logs / "redis.log")
        self.pids["redis"] = int(pidfile.read_text().strip())
        out = subprocess.run([redis_server, "--version"], capture_output=True, text=True).stdout
        self.versions["redis"] = out.split("v=")[1].split()[0] if "v=" in out else out.strip()
        self.save()

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> int:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=str(PROJECT_DIR), start_new_session=True)
        log.close()
        self.pids[name] = proc.pid
        self.save()
        return proc.pid

    def start_s3(self, env: dict[str, str]) -> None:
        port = self.ports["s3"]
        self._spawn("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env)
        _wait(lambda: _port_open(port), 60, "moto S3 server", self.logs / "s3.log")
        from sc_assets.resources.object_store import S3Lake

        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            S3Lake(env["SC_ASSETS_LAKE_URI"], cache_dir=self.dir).create_bucket()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        import moto

        self.versions["s3"] = f"moto {moto.__version__}"
        self.save()

    def worker_names(self) -> list[str]:
        return sorted(k for k in self.pids if k.startswith("worker"))

    def start_worker(self, name: str, env: dict[str, str]) -> int:
        celery_dir = self.dir / "celery"
        celery_dir.mkdir(exist_ok=True)
        (celery_dir / "dagster_celery_config.py").write_text(CELERY_CONFIG_MODULE)
        celery = str(Path(sys.executable).with_name("celery"))
        cmd = [celery, "-A", "dagster_celery.app", "worker", "-n", f"{name}@%h", "-Q", "dagster",
               "--concurrency=1", "--prefetch-multiplier=1", "--loglevel=INFO", "--without-gossip",
               "--without-mingle", "-I", "sc_assets.definitions"]
        return self._spawn(name, cmd, env)

    def wait_workers(self, names: list[str], env: dict[str, str], timeout_s: float = 120) -> None:
        from celery import Celery

        app = Celery("ping", broker=env["SC_ASSETS_CELERY_BROKER"], backend=env["SC_ASSETS_CELERY_BACKEND"])
        wanted = {n for n in names}

        def ready() -> bool:
            for n in names:
                pid = self.pids.get(n)
                if pid and not _alive(pid):
                    raise ClusterError(f"celery worker {n} exited; see {self.logs / (n + '.log')}")
            replies = app.control.ping(timeout=1.0) or []
            seen = {next(iter(r)).split("@")[0] for r in replies}
            return wanted <= seen

        try:
            _wait(ready, timeout_s, f"celery workers {', '.join(names)}", self.logs / f"{names[-1]}.log")
        finally:
            app.close()
        import celery as celery_pkg

        self.versions["celery"] = celery_pkg.__version__

    # ---- up / down -----------------------------------------------------------------------
    def up(self, workers: int = 2, data_dir: Path | None = None) -> dict[str, str]:
        """Start everything (idempotent: a running cluster is stopped first). Returns env.sh's variables."""
        if self.pids:
            self.down()
        for sub in ("logs", "dagster_home", "celery"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ports = {"postgres": free_port(), "redis": free_port(), "s3": free_port()}
        self.pids = {}
        self.save()
        from sc_assets.settings import data_root

        env = self.write_env(data_root(data_dir))
        penv = self.process_env()
        shutil.copyfile(Path(__file__).with_name("dagster.cluster.yaml"), self.dagster_home / "dagster.yaml")
        try:
            self.start_postgres(env)
            self.start_redis(env)
            self.start_s3(penv)
            names = [f"worker{i + 1}" for i in range(workers)]
            for n in names:
                self.start_worker(n, penv)
            self.wait_workers(names, penv)
            self.save()
        except BaseException:
            self.down()
            raise
        return env

    def down(self) -> list[str]:
        """Stop every process recorded in state.json. Returns what was stopped."""
        stopped = []
        for name in self.worker_names() + ["s3"]:
            pid = self.pids.get(name)
            if pid and _alive(pid):
                _terminate_group(pid)
                stopped.append(name)
        pid = self.pids.get("redis")
        if pid and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            _wait_dead(pid, 10)
            stopped.append("redis")
        if self.pids.get("postgres") and (self.pg_data / "postmaster.pid").exists():
            subprocess.run(_as_pg_user([_pg_bin("pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "stop"]),
                           capture_output=True)
            stopped.append("postgres")
        self.pids = {}
        if self.dir.exists():
            self.save()
        return stopped

    def kill_worker(self, name: str) -> None:
        """SIGKILL one worker's whole process group (tests: a worker dies mid-run)."""
        pid = self.pids.get(name)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _wait_dead(pid, 10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as dead
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _terminate_group(pid: int, timeout_s: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    if not _wait_dead(pid, timeout_s):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        _wait_dead(pid, 5)


# ---------------------------------------------------------------------------------------
# running a backfill on the cluster
# ---------------------------------------------------------------------------------------
def reconstructable_job(name: str = "full_backfill"):
    """The code location's job, reconstructable by the Celery workers (module pointer)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repo = ReconstructableRepository.for_module("sc_assets.definitions", "defs", working_directory=str(PROJECT_DIR))
    return repo.get_reconstructable_job(name)


def selected_keys(layers: list[str] | None):
    """Asset keys of the chosen layers (None: every asset)."""
    if not layers:
        return None
    from sc_assets.definitions import defs

    keys = [k for k in defs.resolve_asset_graph().get_all_asset_keys() if k.path[0] in layers]
    return sorted(keys, key=lambda k: k.to_user_string())


def run_backfill(start: str, end: str, layers: list[str] | None = None, tags: dict | None = None):
    """Execute ``full_backfill`` over ``start..end`` with the profile's executor and the
    ``$DAGSTER_HOME`` instance. Returns the run's ``ExecutionResult``-like object."""
    import dagster as dg

    from sc_assets.deploy.profiles import profile
    from sc_assets.jobs import range_tags

    if profile() == "cluster":
        from sc_assets.deploy.profiles import check_cluster

        check_cluster()
    instance = dg.DagsterInstance.get()
    with dg.execute_job(
        reconstructable_job(), instance=instance, asset_selection=selected_keys(layers),
        tags={**range_tags(start, end), "sc_assets/trigger": "cluster-cli", **(tags or {})},
        raise_on_error=False,
    ) as result:
        return result.success, result.run_id


@click.group()
def main() -> None:
    """Local cluster (PostgreSQL, Redis, S3, Celery workers) for the `cluster` profile."""


@main.command("up")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=str(DEFAULT_DIR), show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Data root for landing files/reports (default $SC_ASSETS_DATA_DIR or ./data).")
def up_cmd(directory: str, workers: int, data_dir: str | None) -> None:
    c = Cluster.load(Path(directory))
    c.dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    c.up(workers=workers, data_dir=Path(data_dir) if data_dir else None)
    click.echo(f"cluster up in {time.perf_counter() - t0:.1f} s ({c.dir}):")
    for k in ("postgres", "redis", "s3"):
        click.echo(f"  {k:9s} 127.0.0.1:{c.ports[k]:<6d} {c.versions.get(k, '')}")
    click.echo(f"  celery    {len(c.worker_names())} workers (celery {c.versions.get('celery', '?')})")
    click.echo(f"  lake      s3://{BUCKET}/{LAKE_PREFIX}")
    click.echo(f"next: make cluster-dev (dagster dev on this instance), or: source {c.env_file} && "
               "python -m sc_assets.deploy.cluster backfill --start ... --end ...")


@main.command("down")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=str(DEFAULT_DIR), show_default=True)
def down_cmd(directory: str) -> None:
    c = Cluster.load(Path(directory))
    stopped = c.down()
    click.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@main.command("status")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=str(DEFAULT_DIR), show_default=True)
def status_cmd(directory: str) -> None:
    c = Cluster.load(Path(directory))
    for name, pid in sorted(c.pids.items()):
        click.echo(f"  {name:9s} pid {pid:<7d} {'running' if _alive(pid) else 'DEAD'}")
    if not c.pids:
        click.echo("not running")


@main.command("check")
def check_cmd() -> None:
    """Preflight: reach PostgreSQL, Redis and the bucket with the current environment."""
    from sc_assets.deploy.profiles import ClusterConfigError, check_cluster

    try:
        for s in check_cluster():
            click.echo(f"  ok  {s.service:9s} {s.detail}")
    except ClusterConfigError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("backfill")
@click.option("--start", required=True)
@click.option("--end", required=True)
@click.option("--select", default="", help="Comma-separated layers (default: the whole chain).")
def backfill_cmd(start: str, end: str, select: str) -> None:
    """Run full_backfill over START..END on the active profile (cluster: Celery workers)."""
    from sc_assets.deploy.profiles import ClusterConfigError

    layers = [s for s in select.split(",") if s] or None
    try:
        ok, run_id = run_backfill(start, end, layers)
    except ClusterConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"run {run_id}: {'SUCCESS' if ok else 'FAILURE'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
