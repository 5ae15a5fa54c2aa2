"""csms as a separate process in tests: free ports, starting it, waiting until it serves, stopping it.

For the tests that kill a server (SIGKILL) or run two of them on one database; everything else runs
csms in the test's own Trio loop (``tests.conftest.running_node``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import trio

CSMS_COMMAND = Path(sys.executable).with_name("csms")  # the installed console script


async def csms_command(database_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``csms ARGS`` as an operator would, on ``database_url`` (``CSMS_DEMO_*`` variables unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_DEMO_")}
    env["CSMS_DATABASE_URL"] = database_url
    return await trio.run_process([str(CSMS_COMMAND), "--log-level", "WARNING", *args], env=env,
                                  capture_stdout=True, capture_stderr=True, check=False)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_csms(env: dict[str, str], ocpp_port: int, *, log: Path | None = None) -> trio.Process:
    """Start ``csms serve`` with ``env`` and wait until its OCPP port accepts connections.

    Args:
        log: where its standard error goes (discarded when None).
    """
    if log is None:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "csms.cli", "--log-level", "WARNING", "serve"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        with log.open("wb") as out:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "csms.cli", "--log-level", "WARNING", "serve"], env=env,
                stdout=subprocess.DEVNULL, stderr=out)
    with trio.fail_after(30):
        while True:
            assert proc.returncode is None, log.read_text() if log else "csms exited"
            try:
                stream = await trio.open_tcp_stream("127.0.0.1", ocpp_port)
            except OSError:
                await trio.sleep(0.05)
                continue
            await stream.aclose()
            return proc


async def wait_healthy(proc: trio.Process, http_port: int, log: Path | None = None) -> None:
    """Wait until the API answers ``/healthz`` (it starts after the OCPP listener)."""
    async with httpx.AsyncClient(timeout=2) as http:
        with trio.fail_after(30):
            while True:
                assert proc.returncode is None, log.read_text() if log else "csms exited"
                try:
                    if (await http.get(f"http://127.0.0.1:{http_port}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


async def stop(proc: trio.Process, grace_s: float = 15) -> None:
    """Stop a csms still running: SIGTERM (a graceful stop), then SIGKILL after ``grace_s``."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(grace_s):
        await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
