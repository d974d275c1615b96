"""WebSocket frames as a charger puts them on the wire, for tests that write bytes themselves."""

from __future__ import annotations

MASK = b"\x37\xfa\x21\x3d"


def client_frame(first: int, payload: bytes, *, masked: bool = True) -> bytes:
    """A frame as a client sends it: `first` is the FIN/RSV/opcode byte."""
    size = len(payload)
    if size < 126:
        header = bytes((first, (0x80 if masked else 0) | size))
    elif size < 1 << 16:
        header = bytes((first, (0x80 if masked else 0) | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, (0x80 if masked else 0) | 127)) + size.to_bytes(8, "big")
    if not masked:
        return header + payload
    return header + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def masked_text(message: str) -> bytes:
    return client_frame(0x81, message.encode())
