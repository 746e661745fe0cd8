"""Where data, models and checkpoints live: a local path, or any fsspec URL (``s3://bucket/key``,
``gs://``, ``az://``, ``memory://``...).

:func:`location` resolves a path once into a :class:`Location`: the file system and the path
in it. Credentials come from the usual environment of the store (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ... for S3) or from ``storage_options``, the
file system's keyword arguments (for s3fs: ``endpoint_url``, ``key``, ``secret``, ``anon``...).

Writing without leaving anything half-written: a local directory is written under a temporary
name and renamed (:func:`streamem.data.store.atomic_path`); an object store has no rename, so a group is
written under a temporary prefix and copied into place with its root ``zarr.json`` last, which
is what makes the group exist for a reader, after what was there was copied aside, to be put
back if the copy fails (:meth:`Location.commit_from`); a single object is written in one
request, which a reader sees whole or not at all.

Faults of a store: requests are retried by the store's own library (for S3, botocore's retry
modes, ``config_kwargs={"retries": {"mode": "standard", "max_attempts": N}}`` or
``AWS_MAX_ATTEMPTS``/``AWS_RETRY_MODE``, and s3fs's retries of transport errors around it;
``config_kwargs={"read_timeout": SECONDS}`` bounds a stalled response). What still fails is
raised as one ``OSError`` that names the place (``FileNotFoundError`` as it is), whatever the
library raised (botocore and aiohttp errors included), from :class:`Location` and from the
zarr stores of :meth:`Location.zarr_store`.
"""

from __future__ import annotations

import contextlib
import functools
import io as _io
import posixpath
import shutil
import uuid
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem
from zarr.storage import FsspecStore

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


@functools.cache
def _store_errors() -> tuple[type[BaseException], ...]:
    """What the libraries under fsspec raise for a request that failed (a store's refusal,
    a dropped connection, a cut-off body, a timeout)."""
    import importlib

    errors = [OSError, TimeoutError]
    for module, name in (
        ("botocore.exceptions", "BotoCoreError"),
        ("botocore.exceptions", "ClientError"),
        ("aiohttp", "ClientError"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line (without an OSError's ``[Errno N]``)."""
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _named_error(exc: BaseException, what: str) -> OSError:
    """``exc`` as an OSError whose message starts with ``what`` (the operation and the place);
    built-in OSError types (PermissionError, TimeoutError...) are kept."""
    reason = _reason(exc)
    kind = type(exc) if isinstance(exc, OSError) and type(exc).__module__ == "builtins" else OSError
    try:
        return kind(f"{what}: {reason}")
    except TypeError:  # a constructor that wants other arguments
        return OSError(f"{what}: {reason}")


@contextlib.contextmanager
def _naming(url: str, verb: str):
    """Errors of a store raised as one OSError naming ``url`` (FileNotFoundError, and errors
    that name the place already, as they are)."""
    try:
        yield
    except FileNotFoundError:
        raise
    except _store_errors() as exc:
        if isinstance(exc, OSError) and url in str(exc):
            raise
        raise _named_error(exc, f"cannot {verb} {url!r}") from exc


class _NamingStore(FsspecStore):
    """A zarr store in an fsspec file system whose failed requests raise an OSError that
    names the object (``cannot read 's3://bucket/x.zarr/c/3/0': ...``)."""

    def _url(self, key: str = "") -> str:
        return self.fs.unstrip_protocol(f"{self.path}/{key}".rstrip("/"))

    async def get(self, key, *args, **kwargs):
        with _naming(self._url(key), "read"):
            return await super().get(key, *args, **kwargs)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        with _naming(self._url(key_ranges[0][0] if key_ranges else ""), "read"):
            return await super().get_partial_values(prototype, key_ranges)

    async def exists(self, key):
        with _naming(self._url(key), "read"):
            return await super().exists(key)

    async def getsize(self, key):
        with _naming(self._url(key), "read"):
            return await super().getsize(key)

    async def set(self, key, value, *args, **kwargs):
        with _naming(self._url(key), "write"):
            return await super().set(key, value, *args, **kwargs)

    async def delete(self, key):
        with _naming(self._url(key), "remove"):
            return await super().delete(key)

    async def list(self):
        with _naming(self._url(), "list"):
            async for key in super().list():
                yield key

    async def list_dir(self, prefix):
        with _naming(self._url(prefix), "list"):
            async for key in super().list_dir(prefix):
                yield key

    async def list_prefix(self, prefix):
        with _naming(self._url(prefix), "list"):
            async for key in super().list_prefix(prefix):
                yield key


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

    def _named(self, verb: str):
        """Errors of a remote store as one OSError naming this place (see :func:`_naming`)."""
        return contextlib.nullcontext() if self.local else _naming(self.url, verb)

    # ----------------------------------------------------------------- queries
    def exists(self) -> bool:
        with self._named("reach"):
            return self.fs.exists(self.path)

    def isdir(self) -> bool:
        with self._named("reach"):
            return self.fs.isdir(self.path)

    def isfile(self) -> bool:
        with self._named("reach"):
            return self.fs.isfile(self.path)

    def listdir(self) -> list[str]:
        """Names in this directory (none when it does not exist)."""
        try:
            with self._named("list"):
                entries = self.fs.ls(self.path, detail=False, refresh=True) if not self.local else self.fs.ls(self.path)
        except FileNotFoundError:
            return []
        names = [posixpath.basename(str(entry).rstrip("/")) for entry in entries]
        return sorted(n for n in names if n)

    def modified(self) -> float:
        """Seconds since the epoch of the last write; a directory's is its root metadata's."""
        target = self / _ROOT if not self.local and self.isdir() else self
        with self._named("reach"):
            return target.fs.modified(target.path).timestamp()

    def store_exists(self) -> bool:
        """Whether the place can be written: an existing directory, bucket or container holds it."""
        if self.local:
            parent = Path(self.path).parent
            return (parent if str(parent) else Path(".")).is_dir()
        lead = "/" if self.path.startswith("/") else ""
        parts = self.path.strip("/").split("/")
        with self._named("reach"):
            return any(self.fs.exists(lead + "/".join(parts[:depth])) for depth in range(len(parts) - 1, 0, -1))

    # ---------------------------------------------------------------- contents
    def read_bytes(self) -> bytes:
        with self._named("read"):
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
            with self._named("write"):
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
        """Remove the file or directory tree, if there; a zarr group in a store loses its
        root ``zarr.json`` first, so that readers never find a group with parts missing."""
        if self.local:
            remove(self.path)
            return
        with self._named("remove"):
            self._remove_objects()

    def _remove_objects(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(f"{self.path}/{_ROOT}")
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path, recursive=True)

    def copy_tree_to(self, target: Location) -> None:
        """Copy the objects here to ``target`` in the same store, its root ``zarr.json`` last."""
        with self._named("copy"):
            _copy_tree(self, target)

    def remove_below_root(self) -> None:
        """Remove every object here but the root ``zarr.json``."""
        with self._named("remove"):
            stale = [p for p in self.fs.find(self.path) if p != f"{self.path}/{_ROOT}"]
            if stale:
                self.fs.rm(stale)

    def move(self, target: Location) -> None:
        with self._named("move"):
            self.fs.mv(self.path, target.path, recursive=True)

    def zarr_store(self, read_only: bool = True):
        """What ``zarr.open*`` takes to open this place: a path on local disk, a zarr store
        whose errors name the object otherwise."""
        if self.local:
            return self.path
        return _NamingStore.from_url(
            self.fs.unstrip_protocol(self.path), storage_options=self.options, read_only=read_only
        )

    def commit_from(self, tmp: Location) -> None:
        """Put what was written at ``tmp`` (a remote sibling) at this place, then remove ``tmp``.

        A single object over a single object is one copy, which readers see whole or not at
        all. Otherwise what is here is first copied aside (to ``.NAME.old-...``), removed
        (its root ``zarr.json`` first), and every object of ``tmp`` is copied with the root
        ``zarr.json`` last: a zarr group exists for readers only once it is whole. When that
        fails, what was here is put back before the error is raised; if even that fails, the
        error names where it is kept, whole."""
        with self._named("write"):
            if tmp.fs.isfile(tmp.path) and not self.fs.isdir(self.path):
                tmp.fs.copy(tmp.path, self.path)
            else:
                self._replace_tree(tmp)
        tmp.remove()

    def _replace_tree(self, tmp: Location) -> None:
        old = None
        if self.fs.find(self.path):  # asked afresh: exists() may answer from a listing cache
            old = self.temporary("old")
            try:
                _copy_tree(self, old)
            except BaseException:
                with contextlib.suppress(Exception):
                    old._remove_objects()
                raise
        try:
            self._remove_objects()
            _copy_tree(tmp, self)
        except BaseException as exc:
            restored = old is None
            with contextlib.suppress(Exception):
                self._remove_objects()  # what the copy left: without its root, no reader took it for a group
                if old is not None:
                    _copy_tree(old, self)
                    restored = True
                    old._remove_objects()
            if not restored:
                raise OSError(
                    f"cannot write {self.url!r} ({_reason(exc)}), nor put back what was there, which is "
                    f"kept whole at {old.url!r}"
                ) from exc
            raise
        if old is not None:
            old._remove_objects()


def _copy_tree(source: Location, target: Location) -> None:
    """Copy the objects under ``source`` (in one file system) to ``target``, the root
    ``zarr.json`` last."""
    fs = source.fs
    sources = sorted(fs.find(source.path), key=lambda p: p == f"{source.path}/{_ROOT}")
    targets = [target.path + p[len(source.path) :] for p in sources]
    if sources[:-1]:
        fs.copy(sources[:-1], targets[:-1])
    if sources:
        fs.copy(sources[-1], targets[-1])
