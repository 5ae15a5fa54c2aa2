"""Run the live benchmark's subscribers in Node (``simulators/live_subscribers.js``).

A thousand ``graphql-transport-ws`` clients cost the Python client 16-21% of a core, on the core the
benchmark also gives csms's PostgreSQL. The Node client (the ``ws`` package, as in the OCPP harness's
load generator) does the same work for a few percent. Both clients stamp each update with the time its
read returned; the Node one uses the wall clock, so the MeterValues senders do too when it is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

SCRIPT = Path(__file__).with_name("live_subscribers.js")


class NodeSubscribers:
    """The Node subscriber process: :meth:`start` opens every subscription, :meth:`finish` collects
    ``(subscriber index, epoch seconds, energyWh)`` for every update, in arrival order."""

    def __init__(self, node_modules: Path, url: str, query: str, subs: Sequence[tuple[str, str]]) -> None:
        if not (node_modules / "ws").is_dir():
            raise SystemExit(f"--node-modules: no `ws` package in {node_modules} (use a set-up copy of shared/bench)")
        self._dir = tempfile.TemporaryDirectory(prefix="live-subscribers-")
        self._out = Path(self._dir.name) / "updates.json"
        self._config = Path(self._dir.name) / "config.json"
        self._config.write_text(json.dumps({"url": url, "query": query, "subs": list(subs), "out": str(self._out)}))
        self._node_modules = node_modules
        self._process: trio.Process | None = None
        self.errors = 0

    async def start(self, timeout_s: float = 120) -> None:
        """Start the process and wait until every subscriber has its session's current state."""
        env = {**os.environ, "NODE_PATH": str(self._node_modules)}
        self._process = await trio.lowlevel.open_process(
            ["node", str(SCRIPT), str(self._config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self._process.stdout is not None
        seen = b""
        with trio.fail_after(timeout_s):
            while b"ready" not in seen:
                chunk = await self._process.stdout.receive_some()
                if not chunk:
                    raise SystemExit("the Node subscribers failed to start (see stderr)")
                seen += chunk

    async def finish(self) -> list[tuple[int, float, int]]:
        """Stop the process and return what it received."""
        assert self._process is not None
        assert self._process.stdin is not None
        await self._process.stdin.send_all(b"stop\n")
        with trio.fail_after(30):
            await self._process.wait()
        data: dict[str, Any] = json.loads(self._out.read_text())
        self.errors = int(data["errors"]) + int(data["closed"])
        self._dir.cleanup()
        return [(int(i), float(at), int(energy)) for i, at, energy in data["records"]]

    def cpu_seconds(self) -> float:
        """CPU time the Node process used so far (for the tool's share in the result line)."""
        if self._process is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """Stop the process if it is still running (on failure paths)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
