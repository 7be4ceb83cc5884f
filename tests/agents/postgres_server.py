"""A throwaway PostgreSQL server for tests: Debian's binaries, a fresh cluster in a temporary folder,
trust authentication on 127.0.0.1. Runs as the `postgres` user when the tests run as root (the
server refuses root)."""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from server_process import free_port

__all__ = ["PostgresServer", "postgres_bin", "start_postgres"]


def postgres_bin() -> Path | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresServer:
    url: str
    data: Path
    bin: Path
    prefix: list[str]

    def stop(self) -> None:
        subprocess.run([*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.data.parent, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """A new cluster in its own folder under the system temp dir (pytest's are private to root)."""
    binaries = postgres_bin()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="braid-postgres-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["runuser", "-u", "postgres", "--"]
        folder.chmod(0o755)
        shutil.chown(folder, "postgres", "postgres")
    data, sockets = folder / "data", folder / "sockets"
    for path in (data, sockets):
        path.mkdir(parents=True, exist_ok=True)
        if prefix:
            shutil.chown(path, "postgres", "postgres")
    subprocess.run([*prefix, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    subprocess.run([*prefix, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w",
                    "-o", f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    server = PostgresServer(f"postgresql://postgres@127.0.0.1:{port}/postgres", data, binaries, prefix)
    deadline = time.monotonic() + 30
    while subprocess.run([str(binaries / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"PostgreSQL did not start: {(folder / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    return server
