"""The receive path of Tuya's MCU SDK (v2.5.6 ``wifi_uart_service``), step for step.

The SDK moves received bytes into ``wifi_data_process_buf`` of PROTOCOL_HEAD (7) +
WIFI_DATA_PROCESS_LMT bytes (24 by default) and parses frames in place, from ``offset``:

- a byte that does not start the 0x55 0xAA header is skipped, one at a time;
- a version byte other than 0x00 (``MCU_RX_VER``): two bytes are skipped;
- a frame longer than the buffer plus a header (more than 7 + LMT data bytes): three bytes
  are skipped, and the rest of that frame is scanned for headers like any other bytes;
- a frame not yet complete: wait for more bytes. A frame of LMT+1 .. LMT+7 data bytes can
  never be complete in a full buffer, so the parser waits forever: the MCU is deaf until it
  is power-cycled;
- a bad checksum: three bytes are skipped.

The twin uses this when its ``small_rx_buffer`` fault is on, instead of the gateway's decoder.
"""

from __future__ import annotations

from gateway.tuya.protocol import HEADER, Frame, checksum

__all__ = ["PROTOCOL_HEAD", "SdkReceiver"]

PROTOCOL_HEAD = 7  # 55 AA ver cmd len_hi len_lo ... checksum
MCU_RX_VER = 0x00


class SdkReceiver:
    """Feed bytes, get the frames the SDK would hand to ``data_handle``."""

    def __init__(self, data_limit: int = 24) -> None:
        self.size = PROTOCOL_HEAD + data_limit  # sizeof(wifi_data_process_buf)
        self._buffer = bytearray()
        self._uart = bytearray()  # bytes received, not yet moved into the buffer

    @property
    def wedged(self) -> bool:
        """The buffer is full with a frame that can never complete: nothing more is read."""
        return len(self._buffer) >= self.size

    def feed(self, data: bytes) -> list[Frame]:
        self._uart += data
        frames: list[Frame] = []
        while True:
            room = self.size - len(self._buffer)
            moved = self._uart[:room]
            del self._uart[:room]
            self._buffer += moved
            found, consumed = self._parse()
            frames.extend(found)
            if not moved and not consumed:
                return frames

    def _parse(self) -> tuple[list[Frame], int]:
        buf = self._buffer
        offset = 0
        frames: list[Frame] = []
        while len(buf) - offset >= PROTOCOL_HEAD:
            if buf[offset : offset + 2] != HEADER:
                offset += 1
                continue
            if buf[offset + 2] != MCU_RX_VER:
                offset += 2
                continue
            total = int.from_bytes(buf[offset + 4 : offset + 6], "big") + PROTOCOL_HEAD
            if total > self.size + PROTOCOL_HEAD:
                offset += 3
                continue
            if len(buf) - offset < total:
                break
            if checksum(buf[offset : offset + total - 1]) != buf[offset + total - 1]:
                offset += 3
                continue
            data = bytes(buf[offset + 6 : offset + total - 1])
            frames.append(Frame(buf[offset + 3], data, MCU_RX_VER))
            offset += total
        del buf[:offset]
        return frames, offset
