"""vman_magic.testing: serve(), url(), sse_body(), tokenize()."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from vman_magic.testing import FAULTS, detokenize, serve, sse_body, tokenize, url


def test_serve_gives_a_listening_server_and_stops_it() -> None:
    """serve() yields a running server on a free port and stops it on exit."""
    with serve() as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert httpx.get(server.base_url + "/models").json()["data"][0]["id"] == "vman-demo"
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base_url + "/models")


def test_serve_with_api_key_hides_it_from_reprs() -> None:
    """The key is enforced but never shown in the server's repr."""
    with serve(api_key="sk-very-secret") as server:
        assert httpx.get(server.base_url + "/models").status_code == 401
        assert "sk-very-secret" not in repr(server) and "sk-very-secret" not in repr(server._server)


def test_url_builds_the_knob_prefix() -> None:
    """url() inserts /x/<knobs> before /v1 and combines faults with '+'."""
    base = "http://127.0.0.1:8000/v1"
    assert url(base) == base
    assert url(base, fault="hang") == "http://127.0.0.1:8000/x/fault=hang/v1"
    assert (
        url(base, fault=["no_space", "crlf"], tps=20, first_token_ms=300)
        == "http://127.0.0.1:8000/x/fault=no_space+crlf,tps=20,first_token_ms=300/v1"
    )
    assert url(base, ratelimit=2, retry_after=0.5) == "http://127.0.0.1:8000/x/ratelimit=2,retry_after=0.5/v1"
    with pytest.raises(ValueError, match="unknown fault 'nope'"):
        url(base, fault="nope")
    assert "drop_mid_stream" in FAULTS


def test_sse_body_variants() -> None:
    """sse_body frames dicts as JSON events with the requested line ending and spacing."""
    assert sse_body([{"a": 1}]) == b'data: {"a":1}\n\ndata: [DONE]\n\n'
    assert sse_body([{"t": "中"}], eol="\r\n", space=False, done=False) == 'data:{"t":"中"}\r\n\r\n'.encode()
    assert sse_body(["{broken", b"raw"], done=False) == b"data: {broken\n\ndata: raw\n\n"


def test_tokenize_round_trip() -> None:
    """tokenize/detokenize are the demo model's ids, lossless."""
    ids = tokenize("Return the 中文")
    assert detokenize(ids) == "Return the 中文"
    assert ids[-2:] == tokenize("中文") and len(tokenize("中文")) == 2


def test_import_is_light() -> None:
    """Importing vman_magic.testing loads neither IPython nor the model."""
    code = (
        "import sys, vman_magic.testing as t; "
        "assert 'IPython' not in sys.modules, 'IPython'; "
        "assert t.__name__ and 'vman_magic.demo.model' not in sys.modules or "
        "__import__('vman_magic.demo.model').demo.model._model is None"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
