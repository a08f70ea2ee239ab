"""A real PostgreSQL server for the tests: Debian's PostgreSQL binaries, a cluster made with
initdb in a temporary folder, listening on a Unix socket only, stopped at the end.

    with PostgresServer() as server:
        url = server.create_database("t1")   # postgresql+psycopg://...

Run as root (as CI is), the cluster belongs to the `postgres` user, since PostgreSQL refuses
to run as root; so it lives in a folder of its own under /tmp that this user can reach (a
pytest tmp_path is private to root), removed at the end. The test cluster skips fsync: its
own durability is not under test here.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg


def bin_dir() -> Path:
    """Where initdb and pg_ctl live: Debian's versioned folder, else the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb); apt install postgresql")
    return Path(initdb).parent


class PostgresServer:
    def __init__(self, fsync: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="adapter-registry-pg-"))
        self.data = self.folder / "data"
        self.socket_dir = self.folder / "socket"
        self.fsync = fsync
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.bin = bin_dir()

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> PostgresServer:
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self.folder.chmod(0o755)
            shutil.chown(self.socket_dir, "postgres")
            if not self.data.exists():
                self.data.mkdir()
                shutil.chown(self.data, "postgres")
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", self.user, "-A", "trust", "-E", "UTF8")
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.data / "server.log"), "-w", "start")  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = psycopg.connect(
                    host=str(self.socket_dir), user=self.user, dbname="postgres", autocommit=True
                )
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
