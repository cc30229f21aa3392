"""``vman-magic``: run the demo server, or the demo, from a terminal.

::

    vman-magic serve [--host 127.0.0.1] [--port 0] [--api-key KEY]
                     [--tokens-per-second R] [--first-token-ms T]
                     [--rpm N] [--tpm N] [--no-ratelimit-headers]
    vman-magic demo [...]          # vman_magic._demo_cli
    vman-magic --version

``serve`` prints exactly one line, ``serving http://HOST:PORT/v1``, once the
socket listens (scripts wait for it), and runs until Ctrl-C or SIGTERM. The
key can come from ``VMAN_SERVER_API_KEY`` so it need not appear in ``ps``
output or shell history; it is never printed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from . import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vman-magic",
        description="Run the offline demo model as an OpenAI-compatible server, or a guided %%complete demo in this terminal.",
        epilog="examples:\n  vman-magic demo\n  vman-magic serve --port 8000 --tokens-per-second 20",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vman-magic {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the offline demo model as an OpenAI-compatible server")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default: 0)")
    serve.add_argument(
        "--api-key",
        default=None,
        help="require 'Authorization: Bearer KEY' (default: $VMAN_SERVER_API_KEY, else no key)",
    )
    serve.add_argument("--tokens-per-second", type=_positive, default=None, metavar="R", help="throttle streams")
    serve.add_argument("--first-token-ms", type=_non_negative, default=None, metavar="T", help="delay the first token")
    serve.add_argument(
        "--rpm",
        type=_positive,
        default=None,
        metavar="N",
        help="limit completions to N requests per minute (429 above)",
    )
    serve.add_argument(
        "--tpm", type=_positive, default=None, metavar="N", help="limit completions to N tokens per minute"
    )
    serve.add_argument(
        "--no-ratelimit-headers",
        action="store_true",
        help="answer 429s without x-ratelimit-* or Retry-After headers, like a gateway that explains nothing",
    )
    commands.add_parser(
        "demo", help="the guided demo: real notebook cells, streamed in this terminal (see demo --help)"
    )
    return parser


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vman-magic`` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["demo"]:
        return _demo(args_list[1:])
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command == "serve":
        return _serve(args)
    parser.print_help()
    return 2


def _serve(args: argparse.Namespace) -> int:
    from .demo.running import start_server

    api_key = args.api_key or os.environ.get("VMAN_SERVER_API_KEY") or None
    try:
        server = start_server(
            args.host, args.port, api_key, args.tokens_per_second, args.first_token_ms,
            rpm=args.rpm, tpm=args.tpm, ratelimit_headers=not args.no_ratelimit_headers,
        )  # fmt: skip
    except OSError as exc:
        print(f"vman-magic: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"serving {server.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    return 0


def _demo(args: list[str]) -> int:
    from . import _demo_cli  # looked up at call time, so tests can replace its main

    return _demo_cli.main(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
