"""The common WebSocket frames of OCPP-J, read and written without the ``websockets`` protocol's machinery.

Almost every frame a charger sends is one complete, masked, unfragmented text frame, and almost every frame
csms sends is one unmasked text frame. For those, the ``websockets`` sans-I/O protocol costs ~7.5 µs a
frame (its generator-based parser, a ``Frame`` object per frame, its event list) against ~2.3 µs here,
measured on this machine for a five-value MeterValues and its answer: about 8% of csms's CPU under the
S1 flood. Anything else (control frames, fragments, reserved bits, an unmasked client frame, a frame
too big, one not yet complete, invalid UTF-8) is left to the protocol, which applies RFC 6455 to it as
before, so it alone decides every error and close code.

:func:`take_text_frames` may only be used when the protocol's parser is between frames (see
``WebSocket._fast_read_ok``); it never changes the protocol's state.
"""

from __future__ import annotations

from typing import Final

try:  # the C version, built with the websockets wheel
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - pure-Python fallback of source installs
    from websockets.utils import apply_mask

_FIN_TEXT: Final = 0x81  # FIN set, no reserved bits, opcode 1 (text)
_MASKED: Final = 0x80


def take_text_frames(data: bytes, max_size: int | None) -> tuple[list[str], int]:
    """Decode the complete, masked, unfragmented text frames at the start of ``data``.

    Args:
        data: bytes read from the client, starting at a frame boundary.
        max_size: the largest payload accepted (None: no limit); a larger frame is left to the protocol.

    Returns:
        The messages, and how many bytes of ``data`` they used. The protocol must get the rest.
    """
    messages: list[str] = []
    start, end = 0, len(data)
    while end - start >= 6:  # the smallest masked frame: two header bytes and the mask
        if data[start] != _FIN_TEXT:
            break
        second = data[start + 1]
        if not second & _MASKED:
            break
        length = second & 0x7F
        head = start + 2
        if length == 126:
            length = int.from_bytes(data[head:head + 2], "big")
            head += 2
        elif length == 127:
            length = int.from_bytes(data[head:head + 8], "big")
            head += 8
        payload = head + 4
        if payload + length > end or (max_size is not None and length > max_size):
            break
        try:
            messages.append(str(apply_mask(data[payload:payload + length], data[head:payload]), "utf-8"))
        except UnicodeDecodeError:
            break  # the protocol closes with 1007
        start = payload + length
    return messages, start


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame (a server's frames are never masked)."""
    length = len(payload)
    if length < 126:
        return bytes((_FIN_TEXT, length)) + payload
    if length < 65536:
        return bytes((_FIN_TEXT, 126)) + length.to_bytes(2, "big") + payload
    return bytes((_FIN_TEXT, 127)) + length.to_bytes(8, "big") + payload
