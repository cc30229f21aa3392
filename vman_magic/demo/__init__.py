"""The offline demo model ``vman-demo`` and its OpenAI-compatible HTTP server.

Talks to the rest of vman-magic only over HTTP, exactly as VMAN would::

    from vman_magic.demo.running import start_server
    with start_server() as server:          # 127.0.0.1, a free port
        print(server.base_url)              # http://127.0.0.1:PORT/v1

Standard library plus h11, and the request rules in :mod:`vman_magic.core`.
Faults and throttles for tests are described in :mod:`vman_magic.testing`.

This ``__init__`` imports nothing, so :mod:`vman_magic.demo.launch` (which the
notebook faces use to start the server on demand) can be imported without
loading the model or the HTTP server.
"""
