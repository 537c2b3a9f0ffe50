"""dlib's serialisation primitives (dlib/serialize.h, cuda/tensor.h), read in pure Python.

An integer is a control byte (0x80: negative, low 4 bits: byte count 1-8) and that many little-endian
bytes; a bool is the character '0' or '1'; a string is its length (an integer) and its bytes; a float
is a (mantissa, exponent) integer pair, mantissa * 2**exponent (exponents 32000/32001/32002 are
+inf/-inf/NaN); a tensor is version 2, (num_samples, k, nr, nc) and k*nr*nc*num_samples little-endian
float32s; an alias_tensor (a view into a layer's `params`) is version 1 and its four dimensions.
"""

import math

import numpy as np

_FLOAT_SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}


class DlibReader:
    """A cursor over the bytes of a dlib file; every read names what it reads, so a damaged file fails
    with a ValueError naming the file, the field and the byte position."""

    def __init__(self, data: bytes, source: str):
        self.data, self.source, self.pos = data, source, 0

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{self.source} is not a readable dlib network file: {message} "
                          f"(at byte {self.pos} of {len(self.data)})")

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail(f"truncated while reading {what} ({count} bytes wanted)")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def integer(self, what: str, unsigned: bool = False) -> int:
        control = self.take(1, what)[0]
        negative, size = bool(control & 0x80), control & 0x0F
        if size == 0 or size > 8 or (negative and unsigned):
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{control:02x} while reading {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if negative else value

    def real(self, what: str) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail(f"{what} uses dlib's old text float format, which is not supported")
        mantissa, exponent = self.integer(what), self.integer(what)
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            raise self.fail(f"{what} overflows ({mantissa} * 2**{exponent})") from None

    def string(self, what: str, limit: int = 256) -> str:
        length = self.integer(what, unsigned=True)
        if length > limit:
            raise self.fail(f"implausible length {length} for {what}")
        return self.take(length, what).decode("latin-1")

    def boolean(self, what: str) -> bool:
        char = self.take(1, what)
        if char not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"bad bool {char!r} while reading {what}")
        return char == b"1"

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        start = self.pos
        value = self.integer(f"the version of {what}")
        if value not in allowed:
            self.pos = start
            raise self.fail(f"unexpected version {value} of {what} (expected {' or '.join(map(str, allowed))})")
        return value

    def dims(self, what: str) -> tuple[int, ...]:
        shape = tuple(self.integer(what) for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative dimensions {shape} in {what}")
        return shape

    def tensor(self, what: str) -> np.ndarray:
        self.version(what, (2,))
        shape = self.dims(what)
        count = math.prod(shape)
        raw = self.take(4 * count, f"the {count} floats of {what}")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, ...]:
        self.version(what, (1,))
        return self.dims(what)
