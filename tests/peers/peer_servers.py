"""Start and stop the real servers of the ``peers`` tier: llama.cpp and the LiteLLM proxy.

``bash tests/peers/setup.sh`` installs them outside the project and writes
``peers.json``; this module reads it, starts each server on 127.0.0.1 with a
free port in its own process group, waits until it answers, and stops the
whole group by its id (so no worker process outlives a test session).

Used by ``conftest.py`` (pytest fixtures) and by ``peer_capabilities.py``
(the script that measures what each server honours), so it imports neither
pytest nor vman_magic.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
SETUP = "bash tests/peers/setup.sh"
LLAMA_MODEL = "gemma-3-270m"  # the alias the llama.cpp server and the LiteLLM configs use
LLAMA_INTERRUPTING_MODEL = "gemma-3-270m-interrupting"  # the forwarding proxy's name for the interrupting server
MOCK_MODEL = "mock-model"
MOCK_TEXT = "Mock answer from LiteLLM."  # mock_response in litellm/mock.yaml and key.yaml
STARTUP_TIMEOUT = 180.0  # LiteLLM imports for ~15 s alone; three at once on 2 busy cores take longer


def peers_home() -> Path:
    """Where setup.sh installed the servers (``VMAN_PEERS_HOME``, as in the script)."""
    env = os.environ.get("VMAN_PEERS_HOME")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vman-magic-peers"


def manifest() -> dict[str, Any]:
    """setup.sh's record of what it installed; raises ``LookupError`` with what to run when it is missing."""
    path = peers_home() / "peers.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        raise LookupError(
            f"the peers tier needs llama.cpp and LiteLLM installed outside the project ({path} is missing): "
            f"run `{SETUP}` once (about 15 minutes the first time, seconds afterwards)"
        ) from None
    missing = [data[k] for k in ("llama_python", "litellm", "model") if not Path(data.get(k, "")).exists()]
    if missing:
        raise LookupError(f"the peers installation is incomplete ({', '.join(missing)} missing): run `{SETUP}` again")
    return data


def free_port() -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Peer:
    """One running server: where to reach it, with which model and key, and its process."""

    name: str
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str
    process: subprocess.Popen[bytes]
    log: Path
    api_key: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate the server's whole process group, then kill what is left; wait for it."""
        if self.process.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=15)
        _signal_group(self.pid, signal.SIGKILL)  # any worker the leader left behind
        self.process.wait()

    def __repr__(self) -> str:
        return f"<Peer {self.name} {self.base_url} model={self.model!r} pid={self.pid}>"


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def launch(
    name: str, argv: list[str], *, port: int, model: str, logs: Path, env: dict[str, str] | None = None, **extra: Any
) -> Peer:
    """Start ``argv`` in a new process group (so it can be stopped as a whole); does not wait."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    full_env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=logs, start_new_session=True,
        )  # fmt: skip
    return Peer(name, f"http://127.0.0.1:{port}/v1", model, process, log, **extra)


def wait_ready(peer: Peer, timeout: float = STARTUP_TIMEOUT) -> Peer:
    """Poll ``GET /v1/models`` until the server answers (any status below 500); stop it if it never does."""
    headers = {"Authorization": f"Bearer {peer.api_key}"} if peer.api_key else {}
    deadline = time.monotonic() + timeout
    while True:
        if peer.process.poll() is not None:
            raise RuntimeError(f"{peer.name} exited with {peer.process.returncode} while starting:\n{peer.log_tail()}")
        try:
            if httpx.get(f"{peer.base_url}/models", headers=headers, timeout=2, trust_env=False).status_code < 500:
                return peer
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            peer.stop()
            raise RuntimeError(f"{peer.name} did not answer within {timeout:.0f} s:\n{peer.log_tail()}")
        time.sleep(0.25)


def launch_llama(logs: Path, *, interrupt_requests: bool = False, name: str = "llama") -> Peer:
    """llama-cpp-python's server with Gemma 3 270M.

    ``interrupt_requests`` is the server's own default (True): a new request
    cuts any running stream short. The tier runs one server each way.
    """
    m = manifest()
    port = free_port()
    options = {"interrupt_requests": str(interrupt_requests), "n_ctx": "512"}
    argv = [m["llama_python"], "-m", "llama_cpp.server", "--model", m["model"], "--model_alias", LLAMA_MODEL,
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--verbose", "False"]  # fmt: skip
    argv += [arg for k, v in options.items() for arg in (f"--{k}", v)]
    return launch(name, argv, port=port, model=LLAMA_MODEL, logs=logs, options=options)


def launch_litellm(
    logs: Path,
    config: str,
    *,
    llama: Peer | None = None,
    llama_interrupting: Peer | None = None,
    name: str | None = None,
) -> Peer:
    """The LiteLLM proxy with ``litellm/<config>.yaml``: ``mock``, ``key`` (a fresh master key) or ``forward``.

    ``forward`` needs both llama.cpp servers: it offers :data:`LLAMA_MODEL`
    (forwarded to ``llama``) and :data:`LLAMA_INTERRUPTING_MODEL`.
    """
    m = manifest()
    port = free_port()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # never fetch the price list from the internet
    key = None
    if config == "key":
        key = env["VMAN_PEERS_MASTER_KEY"] = "sk-peers-" + secrets.token_hex(12)
    if config == "forward":
        if llama is None or llama_interrupting is None:
            raise ValueError("the forward config needs both llama.cpp servers")
        env["VMAN_PEERS_LLAMA_URL"] = llama.base_url
        env["VMAN_PEERS_LLAMA_INTERRUPTING_URL"] = llama_interrupting.base_url
    argv = [m["litellm"], "--config", str(HERE / "litellm" / f"{config}.yaml"), "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip
    model = LLAMA_MODEL if config == "forward" else MOCK_MODEL
    return launch(name or f"litellm-{config}", argv, port=port, model=model, logs=logs, env=env, api_key=key)
