"""Fixtures of the ``peers`` tier: real llama.cpp and LiteLLM servers on 127.0.0.1.

Every test in this folder is marked ``peers``. The servers are installed by
``bash tests/peers/setup.sh`` outside the project; when they are not, the
tests skip with a reason that names that command, except under CI (the ``CI``
environment variable set), where they fail: CI must never pass by silently
skipping the tier.

Each server starts once per test session, on first use, with a free port in
its own process group, and is stopped by that group's id at the end (see
``peer_servers.py``). The three LiteLLM proxies start together because each
spends ~15 s importing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from peer_servers import Peer, launch_litellm, launch_llama, manifest, wait_ready


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in tests/peers as ``peers`` (so ``-m peers`` / ``-m 'not peers'`` select the tier)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.peers)


@pytest.fixture(scope="session")
def peers_installed() -> dict[str, Any]:
    """setup.sh's manifest; skips the tier when it is missing, or fails it under CI."""
    try:
        return manifest()
    except LookupError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the peers tier may not be skipped: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def peer_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The servers' output, for the failure messages of wait_ready."""
    return tmp_path_factory.mktemp("peer-logs")


def _serve(peer: Peer) -> Iterator[Peer]:
    try:
        yield wait_ready(peer)
    finally:
        peer.stop()


@pytest.fixture(scope="session")
def llama(peers_installed: dict[str, Any], peer_logs: Path) -> Iterator[Peer]:
    """llama-cpp-python serving Gemma 3 270M with ``--interrupt_requests False`` (queues requests)."""
    yield from _serve(launch_llama(peer_logs, interrupt_requests=False))


@pytest.fixture(scope="session")
def llama_interrupting(peers_installed: dict[str, Any], peer_logs: Path) -> Iterator[Peer]:
    """llama-cpp-python with its default ``--interrupt_requests True``: a new request cuts a running stream short."""
    yield from _serve(launch_llama(peer_logs, interrupt_requests=True, name="llama-interrupting"))


@pytest.fixture(scope="session")
def litellm_proxies(llama: Peer, llama_interrupting: Peer, peer_logs: Path) -> Iterator[dict[str, Peer]]:
    """The three LiteLLM proxies (mock, key, forward to both llama.cpp servers), started together."""
    peers = [
        launch_litellm(peer_logs, c, llama=llama, llama_interrupting=llama_interrupting)
        for c in ("mock", "key", "forward")
    ]
    try:
        yield {p.name.removeprefix("litellm-"): wait_ready(p) for p in peers}
    finally:
        for p in peers:
            p.stop()


@pytest.fixture(scope="session")
def litellm_mock(litellm_proxies: dict[str, Peer]) -> Peer:
    """LiteLLM in mock mode: every completion is ``MOCK_TEXT``; no key needed."""
    return litellm_proxies["mock"]


@pytest.fixture(scope="session")
def litellm_key(litellm_proxies: dict[str, Peer]) -> Peer:
    """LiteLLM in mock mode behind a master key (``.api_key``, made up for this session)."""
    return litellm_proxies["key"]


@pytest.fixture(scope="session")
def litellm_llama(litellm_proxies: dict[str, Peer]) -> Peer:
    """LiteLLM forwarding to ``llama`` (model ``LLAMA_MODEL``) and ``llama_interrupting`` (``LLAMA_INTERRUPTING_MODEL``)."""
    return litellm_proxies["forward"]


@pytest.fixture
def peer_shell(vman_shell: InteractiveShell) -> InteractiveShell:
    """The IPython shell with vman_magic loaded (see tests/conftest.py); point it at a peer with %vman."""
    return vman_shell
