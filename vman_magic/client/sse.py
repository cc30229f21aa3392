"""An incremental Server-Sent Events decoder: raw bytes in, decoded JSON chunks out.

This sits on the hot path of every streamed completion, so it is written for
speed first and works on ``bytes`` end to end:

* network chunks are appended to one ``bytearray`` and searched for the blank
  line that ends an event from where the previous search stopped, so a 1 MB
  line arriving in 1 KB pieces costs linear, not quadratic, time;
* a well-formed block of ``data: {...}`` events (what every OpenAI-compatible
  server sends) is split on ``b"\\n\\n"`` and each payload goes straight to the
  JSON parser, with no per-line Python work and no object per event besides
  the decoded dict;
* text is never decoded before an event is complete, so a multibyte UTF-8
  character split across two network chunks arrives intact;
* an event that is not JSON never costs the good events before it: those are
  returned first, and the caller calls :meth:`SSEDecoder.raise_pending` once
  it has folded them in (the next ``feed`` or ``close`` raises it too).

Everything else the SSE spec allows (CR or CRLF line endings, including a CR
at the end of one chunk and its LF at the start of the next; ``data:`` without
the space; multi-line ``data`` joined with ``"\\n"``; ``:`` comments and
keep-alives; ``event:``/``id:``/``retry:`` fields) takes a slower, general path,
and one UTF-8 byte-order mark at the very start of the stream is dropped.

The decoder knows nothing about completions: ``{"error": ...}`` payloads are
returned like any other chunk, and ``CompletionBuilder.add`` turns them into a
:class:`~vman_magic.StreamAPIError` with the partial result attached.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from ..core.errors import StreamError
from .shape import _SCAN_FROM, _JSONTooDeep, json_loads, loads, parse_json

__all__ = ["SSEDecoder", "aiter_chunks", "iter_chunks", "json_loads", "loads"]

_DONE = b"[DONE]"
_SEP = b"\n\n"
_BAD_EVENT_CHARS = 200
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Feed it network chunks with :meth:`feed`; it returns the decoded JSON chunks.

    ``done`` turns true when the server sent the ``data: [DONE]`` sentinel;
    anything after it is ignored. Call :meth:`close` at end of input to get an
    event the server left without its final blank line.
    """

    __slots__ = ("_buf", "_cr", "_error", "_head", "_scan", "done")

    def __init__(self) -> None:
        self._buf = bytearray()  # bytes after the last complete event
        self._scan = 0  # where the next search for b"\n\n" in _buf may start
        self._cr = False  # the previous chunk ended in CR: drop a leading LF now
        self._head: bytes | None = b""  # the first bytes, until we know whether they are a byte-order mark
        self._error: StreamError | None = None  # a bad event, raised after the good ones before it
        self.done = False

    def feed(self, data: bytes) -> list[Any]:
        """Add one network chunk; return the chunks of every event it completed.

        Raises :class:`StreamError` for an event that is not JSON, on the call
        after the one that returned the good events before it.
        """
        if self._error is not None:
            self.raise_pending()
        if self.done or not data:
            return []
        if self._head is not None:  # the SSE standard: ignore one leading BOM, even split across chunks
            data = self._head + data
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._head = data
                return []
            self._head = None
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                if not data:
                    return []
        if self._cr and data[:1] == b"\n":
            data = data[1:]  # the LF of a CRLF pair split across two chunks
            if not data:
                self._cr = False
                return []
        if b"\r" in data:
            self._cr = data[-1:] == b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._cr = False
        buf = self._buf
        if buf:
            buf += data
            end = buf.rfind(_SEP, self._scan)
            if end < 0:
                self._scan = len(buf) - 1
                return []
            block = bytes(buf[:end])
            del buf[: end + 2]
        else:
            end = data.rfind(_SEP)
            if end < 0:
                buf += data
                self._scan = len(data) - 1
                return []
            block = data[:end]
            if end + 2 < len(data):
                buf += data[end + 2 :]
        self._scan = max(len(buf) - 1, 0)
        return self._decode_block(block)

    def close(self) -> list[Any]:
        """Signal end of input; return the last event if its lines were complete.

        The SSE spec drops an event that is not followed by a blank line, but
        some servers end with ``data: [DONE]\\n``; we accept an event whose
        last line ended in a newline. A trailing line with no newline at all
        was cut off in transit and is dropped: the caller notices the missing
        ``[DONE]`` instead of a confusing JSON error.
        """
        if self._error is not None:
            self.raise_pending()
        buf, self._buf = bytes(self._buf), bytearray()
        if self.done or not buf:
            return []
        end = buf.rfind(b"\n")
        return self._decode_block(buf[:end]) if end >= 0 else []

    def raise_pending(self) -> None:
        """Raise the :class:`StreamError` of a bad event whose good predecessors were returned; else nothing."""
        error, self._error = self._error, None
        if error is not None:
            self.done = True  # nothing after a bad event is trusted
            raise error

    def _decode_block(self, block: bytes) -> list[Any]:
        """Decode complete events separated by blank lines (LF-only text).

        A bad event keeps the good ones before it: they are returned and the
        error waits in ``_error`` (raised at once when there are none).
        """
        out: list[Any] = []
        try:
            for event in block.split(_SEP):
                if event[:6] == b"data: " and event.find(b"\n", 6) < 0:
                    payload = event[6:]  # the fast path: one "data: " line
                else:
                    if not self._decode_general(event, out):
                        break
                    continue
                if payload == _DONE:
                    self.done = True
                    break
                if len(payload) < _SCAN_FROM:  # too short to nest past the parsers: no depth scan, no call
                    try:
                        out.append(loads(payload))
                        continue
                    except (ValueError, RecursionError):
                        pass  # _parse below raises the one-line StreamError
                out.append(_parse(payload))
        except StreamError as exc:
            if not out:
                self.done = True
                raise
            self._error = exc
        return out

    def _decode_general(self, event: bytes, out: list[Any]) -> bool:
        """Parse one event line by line per the SSE spec; False after ``[DONE]``."""
        data: list[bytes] = []
        for line in [*event.split(b"\n"), b""]:
            if not line:  # blank line: dispatch what was gathered
                if data:
                    payload = b"\n".join(data)
                    data = []
                    if payload == _DONE:
                        self.done = True
                        return False
                    out.append(_parse(payload))
                continue
            if line[:1] == b":":
                continue  # a comment or keep-alive
            name, _, value = line.partition(b":")
            if name == b"data":
                data.append(value[1:] if value[:1] == b" " else value)
            # event:, id:, retry: and unknown fields carry nothing we use
        return True


def _parse(payload: bytes) -> Any:
    try:
        return parse_json(payload)
    except _JSONTooDeep as exc:
        raise StreamError(f"the server sent an event {exc}: refused") from None
    except ValueError:  # JSONDecodeError (json and orjson) and UnicodeDecodeError
        shown = payload[:_BAD_EVENT_CHARS].decode("utf-8", "replace")
        more = "..." if len(payload) > _BAD_EVENT_CHARS else ""
        raise StreamError(f"the server sent an event that is not JSON: {shown!r}{more}") from None


def iter_chunks(raw: Iterable[bytes]) -> Iterator[Any]:
    """Decode a whole byte stream, e.g. ``iter_chunks(response.iter_raw())``."""
    decoder = SSEDecoder()
    for data in raw:
        yield from decoder.feed(data)
        decoder.raise_pending()
        if decoder.done:
            return
    yield from decoder.close()


async def aiter_chunks(raw: AsyncIterable[bytes]) -> AsyncIterator[Any]:
    """The async twin of :func:`iter_chunks`, e.g. for ``response.aiter_raw()``."""
    decoder = SSEDecoder()
    async for data in raw:
        for chunk in decoder.feed(data):
            yield chunk
        decoder.raise_pending()
        if decoder.done:
            return
    for chunk in decoder.close():
        yield chunk
