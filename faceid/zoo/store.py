"""The local model cache: `$FACEID_HOME/models/<name>/` (default `~/.cache/faceid`).

Each cached model is one file, `<name>.pt` (a faceid backbone checkpoint) or `<name>.onnx` with
`<name>.yaml` beside it (faceid's third-party preprocessing description plus the alignment), made
by `pull` (download, verify, convert) or `import_model` (the same from a file obtained another way).
A cached model never touches the network; the model file is renamed into place last, so its
presence means the model is complete.
"""

import os
import shutil
import sys
import zipfile
from pathlib import Path

import yaml

from faceid.files import atomic_write
from faceid.zoo.catalog import ModelEntry, ZooError, model_info
from faceid.zoo.download import CHUNK, DownloadError, OfflineError, download, partial_path, sha256_of


def faceid_home() -> Path:
    return Path(os.environ.get("FACEID_HOME") or Path.home() / ".cache" / "faceid").expanduser()


def model_dir(name: str) -> Path:
    return faceid_home() / "models" / name


def model_path(name: str) -> Path:
    """Where model `name` lives once cached (whether or not it is)."""
    return model_dir(name) / model_info(name).filename


def cached_path(name: str) -> Path | None:
    path = model_path(name)
    return path if path.is_file() else None


def _download_path(entry: ModelEntry) -> Path:
    return model_dir(entry.name) / "download" / entry.download_name


def status(name: str) -> str:
    """'cached', 'partial download' (a pull resumes it) or 'not cached'."""
    if cached_path(name):
        return "cached"
    return "partial download" if partial_path(_download_path(model_info(name))).is_file() else "not cached"


def import_command(name: str) -> str:
    return f"faceid models import FILE --as {name}"


def check_licence(entry: ModelEntry, accept_licence: bool) -> None:
    if not entry.commercial_use and not accept_licence:
        raise ZooError(f"{entry.name} is licensed '{entry.licence}'. Confirm that your use complies by adding "
                       f"--accept-licence (`faceid models pull {entry.name} --accept-licence`; "
                       "accept_licence=True in Python)")


def pull(name: str, accept_licence: bool = False, progress: bool = True, timeout: float | None = None) -> Path:
    """The cached model file of `name`, downloading, verifying and converting it first if needed."""
    entry = model_info(name)
    cached = cached_path(name)
    if cached:
        return cached
    check_licence(entry, accept_licence)
    if entry.kind == "dlib":
        from faceid.zoo.dlib_format import dlib_model_file

        return _install(entry, dlib_model_file())
    downloaded = _download(entry, timeout, progress)
    try:
        return _install(entry, downloaded)
    finally:
        shutil.rmtree(downloaded.parent, ignore_errors=True)


def resolve(name: str) -> Path:
    """The cached model file, pulled first when missing (and its licence allows it without asking)."""
    cached = cached_path(name)
    if cached:
        return cached
    entry = model_info(name)
    check_licence(entry, accept_licence=False)
    print(f"faceid: pulling model {name} (licence: {entry.licence})", file=sys.stderr)
    return pull(name)


def import_model(file: str | Path, name: str, accept_licence: bool = False) -> Path:
    """Install a manually obtained file as model `name`: checked against the catalog's checksum
    when one is known, then converted as `pull` would. The file itself is left untouched."""
    entry = model_info(name)
    file = Path(file)
    if not file.is_file():
        raise ZooError(f"{file} does not exist or is not a file (model {name} expects {entry.download_name})")
    check_licence(entry, accept_licence)
    if entry.kind != "onnx_zip" or zipfile.is_zipfile(file):  # a bare model file is checked once extracted
        _verify(file, entry.sha256, f"{entry.download_name} of {name}")
    return _install(entry, file)


def remove_model(name: str) -> Path:
    """Delete model `name` (and any partial download of it) from the cache; returns the folder removed."""
    model_info(name)
    folder = model_dir(name)
    if not folder.exists():
        raise ZooError(f"model {name} is not in the cache ({folder}); nothing to remove")
    shutil.rmtree(folder)
    return folder


def _verify(file: Path, expected: str | None, what: str, shown: str = "") -> None:
    actual = sha256_of(file) if expected else None
    if actual != expected:
        raise ZooError(f"{shown or file} has sha256 {actual}, but the {what} has sha256 {expected}: "
                       "refusing it (a different or corrupted file)")


def _download(entry: ModelEntry, timeout: float | None, progress: bool) -> Path:
    hint = f"If you obtained {entry.download_name} another way, install it with: {import_command(entry.name)}"
    failures = []
    for url in entry.urls:
        try:
            return download(url, _download_path(entry), entry.sha256, timeout, progress)
        except OfflineError:
            raise ZooError(f"model {entry.name} is not in the cache ({model_dir(entry.name)}) and FACEID_OFFLINE=1 "
                           f"forbids downloading it from {url}. {hint}") from None
        except DownloadError as error:
            failures.append(str(error))
    raise ZooError(f"could not download model {entry.name}: {'; '.join(failures)}. {hint}")


def _install(entry: ModelEntry, source: Path) -> Path:
    destination = model_path(entry.name)
    with atomic_write(destination) as temporary:  # renamed into place last: its presence means complete
        if entry.kind == "facenet":
            from faceid.zoo.facenet import convert_facenet

            convert_facenet(source, temporary, entry)
        elif entry.kind == "dlib":
            from faceid.zoo.dlib_format import convert_dlib_model

            convert_dlib_model(source, temporary)
        else:
            _copy_onnx(entry, source, temporary)
            _write_description(entry, destination.with_suffix(".yaml"))
    return destination


def _write_description(entry: ModelEntry, path: Path) -> None:
    """faceid's third-party preprocessing description, plus the alignment template and provenance."""
    description = {**entry.preprocessing(), "alignment": entry.alignment, "embedding_dim": entry.embedding_dim,
                   "zoo_name": entry.name, "licence": entry.licence, "source": entry.source}
    with atomic_write(path) as temporary:
        temporary.write_text(yaml.safe_dump(description, sort_keys=False))


def _copy_onnx(entry: ModelEntry, source: Path, target: Path) -> None:
    shown = str(source)
    if entry.member and zipfile.is_zipfile(source):
        shown = f"{entry.member} in {source}"
        with zipfile.ZipFile(source) as archive:
            members = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == entry.member]
            if not members:
                raise ZooError(f"{source} holds no {entry.member}: is it {entry.download_name} of {entry.name}?")
            with archive.open(members[0]) as reader, open(target, "wb") as writer:
                shutil.copyfileobj(reader, writer, CHUNK)
    else:
        shutil.copyfile(source, target)
    _verify(target, entry.member_sha256, f"{entry.member} of {entry.name}", shown)
