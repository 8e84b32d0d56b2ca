"""AWS event-stream framing (application/vnd.amazon.eventstream), the encoder Bedrock's streams use.

Frame: total length (u32), headers length (u32), prelude CRC32, headers, payload, message CRC32
(over everything before it). Header: name length (u8), name, type 7 (string), value length (u16), value."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

_STRING = 7


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    raw_headers = b"".join(
        struct.pack(">B", len(n := name.encode())) + n + struct.pack(">BH", _STRING, len(v := value.encode())) + v
        for name, value in headers.items()
    )
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + raw_headers + payload
    return head + struct.pack(">I", zlib.crc32(head))
