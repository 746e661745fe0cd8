"""Where data, models and checkpoints live: a local path, or any fsspec URL (``s3://bucket/key``,
``gs://``, ``az://``, ``memory://``...).

:func:`location` resolves a path once into a :class:`Location`: the file system and the path
in it. Credentials come from the usual environment of the store (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ... for S3) or from ``storage_options``, the
file system's keyword arguments (for s3fs: ``endpoint_url``, ``key``, ``secret``, ``anon``...).

Writing without leaving anything half-written: a local directory is written under a temporary
name and renamed (:func:`streamem.io.atomic_path`); an object store has no rename, so a group is
written under a temporary prefix and copied into place with its root ``zarr.json`` last, which
is what makes the group exist for a reader (:meth:`Location.commit_from`); a single object is
written in one request, which a reader sees whole or not at all.
"""

from __future__ import annotations

import io as _io
import posixpath
import shutil
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem

__all__ = ["Location", "is_url", "location", "parse_storage_options", "remove"]

_ROOT = "zarr.json"


def is_url(path) -> bool:
    """Whether ``path`` names a place in a remote file system (``PROTOCOL://...``, not ``file://``)."""
    return isinstance(path, str) and "://" in path and fsspec.utils.get_protocol(path) not in ("file", "local")


def location(path, storage_options: dict | None = None) -> Location:
    """``path`` (a local path, a ``file://`` URL or any fsspec URL) as a :class:`Location`."""
    if isinstance(path, Location):
        return path
    if storage_options is not None and not isinstance(storage_options, dict):
        raise TypeError(f"expected storage_options as a dict, got {type(storage_options).__name__}")
    if not is_url(path):
        text = str(path)
        if text.startswith("file://"):
            text = text[len("file://") :]
        return Location(LocalFileSystem(), str(Path(text)), str(Path(text)))
    try:
        fs, inner = fsspec.core.url_to_fs(path, **(storage_options or {}))
    except (ImportError, ValueError) as exc:  # no implementation for the protocol, or bad options
        raise ValueError(f"cannot open {path!r}: {exc}") from None
    return Location(fs, inner.rstrip("/"), path.rstrip("/"), storage_options)


def remove(path) -> None:
    """Remove a local file, a symbolic link or a directory tree, if there."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def parse_storage_options(pairs) -> dict:
    """``["KEY=VALUE", ...]`` (the command line's ``--storage-option``) as a dict; values
    are read as JSON where they parse (``true``, ``3``, ``{"a": 1}``), as text otherwise."""
    import json

    options = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected a storage option as KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


class Location:
    """A file or directory (a key prefix in an object store) in a file system.

    Attributes
    ----------
    fs : fsspec.AbstractFileSystem
    path : str
        The path in ``fs``.
    url : str
        As the user gave it (for messages).
    """

    def __init__(self, fs, path: str, url: str, options: dict | None = None):
        self.fs = fs
        self.path = path
        self.url = url
        self.options = options or {}

    @property
    def local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __truediv__(self, name: str) -> Location:
        if self.local:
            joined = str(Path(self.path) / name)
            return Location(self.fs, joined, joined)
        return Location(self.fs, f"{self.path}/{name}", f"{self.url}/{name}", self.options)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path) if not self.local else Path(self.path).name

    @property
    def parent(self) -> Location:
        if self.local:
            parent = str(Path(self.path).parent)
            return Location(self.fs, parent, parent)
        return Location(self.fs, posixpath.dirname(self.path), self.url.rsplit("/", 1)[0], self.options)

    def sibling(self, name: str) -> Location:
        return self.parent / name

    def temporary(self, what: str = "tmp") -> Location:
        """A new name beside this one, hidden (starting with ``.``)."""
        return self.sibling(f".{self.name}.{what}-{uuid.uuid4().hex}")

    # ----------------------------------------------------------------- queries
    def exists(self) -> bool:
        return self.fs.exists(self.path)

    def isdir(self) -> bool:
        return self.fs.isdir(self.path)

    def isfile(self) -> bool:
        return self.fs.isfile(self.path)

    def listdir(self) -> list[str]:
        """Names in this directory (none when it does not exist)."""
        try:
            entries = self.fs.ls(self.path, detail=False, refresh=True) if not self.local else self.fs.ls(self.path)
        except FileNotFoundError:
            return []
        names = [posixpath.basename(str(entry).rstrip("/")) for entry in entries]
        return sorted(n for n in names if n)

    def modified(self) -> float:
        """Seconds since the epoch of the last write; a directory's is its root metadata's."""
        target = self / _ROOT if not self.local and self.isdir() else self
        return target.fs.modified(target.path).timestamp()

    def store_exists(self) -> bool:
        """Whether the place can be written: an existing directory, bucket or container holds it."""
        if self.local:
            parent = Path(self.path).parent
            return (parent if str(parent) else Path(".")).is_dir()
        lead = "/" if self.path.startswith("/") else ""
        parts = self.path.strip("/").split("/")
        return any(self.fs.exists(lead + "/".join(parts[:depth])) for depth in range(len(parts) - 1, 0, -1))

    # ---------------------------------------------------------------- contents
    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def write_bytes(self, data: bytes) -> None:
        """Write a whole file at once: a temporary local file renamed into place, or one
        request to an object store."""
        if self.local:
            import os

            tmp = Path(self.temporary().path)
            try:
                tmp.write_bytes(data)
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            self.fs.pipe_file(self.path, data)

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def open_npy(self):
        """A ``.npy`` file's array: memory-mapped from local disk, read whole from a store."""
        import numpy as np

        if self.local:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        return np.load(_io.BytesIO(self.read_bytes()), allow_pickle=False)

    def remove(self) -> None:
        """Remove the file or directory tree, if there."""
        if self.local:
            remove(self.path)
            return
        try:
            self.fs.rm(self.path, recursive=True)
        except FileNotFoundError:
            pass

    def move(self, target: Location) -> None:
        self.fs.mv(self.path, target.path, recursive=True)

    def zarr_store(self, read_only: bool = True):
        """What ``zarr.open*`` takes to open this place."""
        if self.local:
            return self.path
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.fs.unstrip_protocol(self.path), storage_options=self.options,
                                    read_only=read_only)  # fmt: skip

    def commit_from(self, tmp: Location) -> None:
        """Put what was written at ``tmp`` (a remote sibling) at this place: what was here
        goes first, then every object is copied with the root ``zarr.json`` last (a zarr
        group or array exists for readers only once it is whole), then ``tmp`` goes."""
        self.remove()
        if tmp.fs.isfile(tmp.path):
            tmp.fs.copy(tmp.path, self.path)
        else:
            sources = sorted(tmp.fs.find(tmp.path), key=lambda p: p == f"{tmp.path}/{_ROOT}")
            targets = [self.path + p[len(tmp.path) :] for p in sources]
            if sources[:-1]:
                tmp.fs.copy(sources[:-1], targets[:-1])
            if sources:
                tmp.fs.copy(sources[-1], targets[-1])
        tmp.remove()
