"""insightface / MXNet RecordIO packs (`train.rec` + `train.idx`), read and written with `struct`.

A record is: magic 0xced7230a (uint32), lrecord (uint32: upper 3 bits continuation flag, lower 29
bits length), then `length` bytes padded to 4. Its payload starts with the IRHeader
`<IfQQ` (flag, label, id, id2); when flag > 0, `flag` float32 labels follow. The rest is the
encoded image. In insightface packs, record 0 is a header whose label holds the range of image
record keys: images are keys 1 .. label[0] − 1.
"""

import io
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

MAGIC = 0xCED7230A
HEADER = struct.Struct("<IfQQ")


def _read_index(idx_path: Path) -> dict[int, int]:
    offsets = {}
    for number, line in enumerate(idx_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            key, offset = line.split()
            offsets[int(key)] = int(offset)
        except ValueError:
            raise ValueError(f"{idx_path}:{number}: expected 'key<TAB>offset', got {line!r}") from None
    return offsets


class RecordIOReader:
    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        self.rec_path = Path(rec_path)
        idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        for path in (self.rec_path, idx_path):
            if not path.is_file():
                raise FileNotFoundError(f"RecordIO file {path} does not exist")
        self.offsets = _read_index(idx_path)
        self._fd = None

    def __getstate__(self):  # picklable for spawned DataLoader workers: each opens the file
        return {**self.__dict__, "_fd": None}

    def _read(self, offset: int, size: int) -> bytes:
        """Positional read: forked DataLoader workers share the descriptor, never a file offset."""
        if self._fd is None:
            self._fd = os.open(self.rec_path, os.O_RDONLY)
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise ValueError(f"{self.rec_path}: truncated record at offset {offset}")
        return data

    def raw(self, key: int) -> bytes:
        if key not in self.offsets:
            raise KeyError(f"record {key} is not in the index of {self.rec_path}")
        offset = self.offsets[key]
        magic, lrecord = struct.unpack("<II", self._read(offset, 8))
        if magic != MAGIC:
            raise ValueError(f"{self.rec_path}: record {key} has a bad magic number {magic:#x}")
        return self._read(offset + 8, lrecord & ((1 << 29) - 1))

    def header(self, key: int) -> tuple[int, np.ndarray, bytes]:
        """(flag, labels, payload after the header) of record `key`."""
        payload = self.raw(key)
        flag, label, _, _ = HEADER.unpack_from(payload)
        offset = HEADER.size
        if flag > 0:
            labels = np.frombuffer(payload, dtype=np.float32, count=flag, offset=offset)
            offset += 4 * flag
        else:
            labels = np.array([label], dtype=np.float32)
        return flag, labels, payload[offset:]

    def image_keys(self) -> list[int]:
        flag, labels, _ = self.header(0) if 0 in self.offsets else (0, np.zeros(1), b"")
        if 0 in self.offsets and flag > 0:
            return list(range(1, int(labels[0])))
        return sorted(k for k in self.offsets if k != 0 or flag == 0)

    def label(self, key: int) -> int:
        return int(self.header(key)[1][0])

    def image(self, key: int) -> np.ndarray:
        encoded = self.header(key)[2]
        try:
            with Image.open(io.BytesIO(encoded)) as image:
                return np.asarray(image.convert("RGB"))
        except OSError as error:
            raise ValueError(f"{self.rec_path} record {key}: undecodable image ({error})") from None


def write_recordio(rec_path: str | Path, samples: list[tuple[np.ndarray, int]]) -> None:
    """Write an insightface-style pack: header record 0, then one JPEG record per (crop, label)."""
    rec_path = Path(rec_path)

    def record(flag: int, label: float, labels: np.ndarray | None, data: bytes) -> bytes:
        extra = labels.astype(np.float32).tobytes() if labels is not None else b""
        payload = HEADER.pack(flag, label, 0, 0) + extra + data
        padding = (-len(payload)) % 4
        return struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * padding

    offsets = []
    with open(rec_path, "wb") as handle:
        offsets.append(handle.tell())
        handle.write(record(2, 0.0, np.array([len(samples) + 1, len(samples) + 1]), b""))
        for crop, label in samples:
            buffer = io.BytesIO()
            Image.fromarray(crop).save(buffer, "JPEG", quality=95)
            offsets.append(handle.tell())
            handle.write(record(0, float(label), None, buffer.getvalue()))
    rec_path.with_suffix(".idx").write_text("".join(f"{key}\t{offset}\n" for key, offset in enumerate(offsets)))
