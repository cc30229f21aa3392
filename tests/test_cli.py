"""The vman-magic command line: serve, --version, demo dispatch."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from vman_magic import __version__
from vman_magic._cli import main


def test_serve_prints_one_line_answers_and_exits_on_sigterm() -> None:
    """`python -m vman_magic serve` prints 'serving URL', answers, and exits 0 on SIGTERM."""
    env = {**os.environ, "VMAN_SERVER_API_KEY": "sk-from-env"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vman_magic", "serve", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("serving http://127.0.0.1:") and line.endswith("/v1")
        base = line.split()[1]
        assert httpx.get(base + "/models", timeout=30).status_code == 401
        ok = httpx.get(base + "/models", headers={"Authorization": "Bearer sk-from-env"}, timeout=30)
        assert ok.json()["data"][0]["id"] == "vman-demo"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out == "" and "sk-from-env" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and __version__ in capsys.readouterr().out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a command the help is printed and the status is 2."""
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    """--help reads as plain text: no reST markup, no internal module names."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "serve" in out and "demo" in out and "%%complete" in out
    assert "``" not in out and "vman_magic" not in out


def test_port_in_use_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """A port that is taken gives exit status 1 and a one-line message, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vman-magic: could not start the demo server") and "Traceback" not in err


def test_demo_dispatches_to_demo_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """`vman-magic demo ARGS` calls vman_magic._demo_cli.main(ARGS)."""
    import vman_magic._demo_cli as demo_cli

    seen: list[list[str]] = []
    monkeypatch.setattr(demo_cli, "main", lambda args: seen.append(args) or 0)
    assert main(["demo", "--fast"]) == 0
    assert seen == [["--fast"]]
