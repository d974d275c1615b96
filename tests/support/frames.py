"""WebSocket frames as a charger puts them on the wire, for tests that write bytes themselves."""

from __future__ import annotations

MASK = b"\x37\xfa\x21\x3d"


def client_frame(
    first: int, payload: bytes, *, masked: bool = True, length_bytes: int | None = None
) -> bytes:
    """A frame as a client sends it: `first` is the FIN/RSV/opcode byte; the length in its shortest
    form unless `length_bytes` (0, 2 or 8) says otherwise."""
    size = len(payload)
    if length_bytes is None:
        length_bytes = 0 if size < 126 else 2 if size < 1 << 16 else 8
    mask_bit = 0x80 if masked else 0
    if length_bytes == 0:
        header = bytes((first, mask_bit | size))
    else:
        header = bytes((first, mask_bit | (126 if length_bytes == 2 else 127))) + size.to_bytes(
            length_bytes, "big"
        )
    if not masked:
        return header + payload
    return header + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def masked_text(message: str) -> bytes:
    return client_frame(0x81, message.encode())
