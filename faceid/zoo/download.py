"""Resumable, verified HTTP downloads with the standard library.

`download(url, destination, sha256)` streams into `destination.part`, resumes a kept partial file
with an HTTP Range request (starting over when the server ignores it), checks the sha256 and only
then renames the file into place, so `destination` is always a complete, verified file. A checksum
mismatch removes the partial file. Every socket operation has a timeout (connect and each read), so
a stalled server ends in an error instead of a hang. `FACEID_OFFLINE=1` forbids any request.
"""

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from faceid.zoo.catalog import ZooError

CHUNK = 1 << 20
DEFAULT_TIMEOUT = 30.0
ATTEMPTS = 3  # connections tried while each one brings more data


class DownloadError(ZooError):
    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason


class OfflineError(DownloadError):
    pass


def offline() -> bool:
    return os.environ.get("FACEID_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def default_timeout() -> float:
    text = os.environ.get("FACEID_DOWNLOAD_TIMEOUT", "")
    try:
        return float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        raise ZooError(f"FACEID_DOWNLOAD_TIMEOUT must be a number of seconds, got {text!r}") from None


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def partial_path(destination: str | Path) -> Path:
    destination = Path(destination)
    return destination.with_name(destination.name + ".part")


def download(url: str, destination: str | Path, sha256: str | None = None, timeout: float | None = None,
             progress: bool = True) -> Path:
    """Fetch `url` into `destination` (verified against `sha256` when given); returns `destination`."""
    if offline():
        raise OfflineError(url, "network access is disabled (FACEID_OFFLINE=1)")
    timeout = default_timeout() if timeout is None else timeout
    destination = Path(destination)
    partial = partial_path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        before = partial.stat().st_size if partial.exists() else 0
        if _fetch(url, partial, timeout, progress):
            break
        if partial.stat().st_size <= before:
            raise DownloadError(url, "the server closed the connection without sending more data "
                                     f"(partial download kept at {partial}; it resumes on the next try)")
    else:
        raise DownloadError(url, f"the connection dropped {ATTEMPTS} times (partial download kept at {partial}; "
                                 "it resumes on the next try)")
    actual = sha256_of(partial)
    if sha256 and actual != sha256.lower():
        partial.unlink()
        raise DownloadError(url, f"sha256 mismatch: expected {sha256}, got {actual}; the file was discarded "
                                 "(a corrupted transfer or a changed upstream file)")
    os.replace(partial, destination)
    return destination


def _fetch(url: str, partial: Path, timeout: float, progress: bool) -> bool:
    """One request, appending to `partial`; True when the whole body arrived."""
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "faceid-model-zoo"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # the kept partial file is no prefix the server can continue: restart
            partial.unlink()
            return _fetch(url, partial, timeout, progress)
        raise DownloadError(url, f"HTTP error {error.code} {error.reason}") from None
    except TimeoutError:
        raise DownloadError(url, f"no answer within {timeout:g} s (timed out)") from None
    except urllib.error.URLError as error:
        raise DownloadError(url, f"could not connect ({error.reason})") from None
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(url, f"the request failed ({error})") from None
    with response:
        if response.status != 206:  # a full answer: the server ignored (or was not sent) the Range header
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        received = offset
        with open(partial, "ab" if offset else "wb") as handle, \
                tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=partial.name.removesuffix(".part"), disable=not progress, leave=False) as bar:
            while True:
                try:
                    chunk = response.read1(CHUNK)
                except TimeoutError:
                    raise DownloadError(url, f"no data for {timeout:g} s (read timed out; partial download kept "
                                             f"at {partial}, it resumes on the next try)") from None
                except (OSError, http.client.HTTPException):
                    break
                if not chunk:
                    break
                handle.write(chunk)
                bar.update(len(chunk))
                received += len(chunk)
    return total is None or received >= total
