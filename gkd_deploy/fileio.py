"""Files written so that an interrupted process never leaves a half-written one behind."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` in one rename.

    The rename is atomic on POSIX and Windows filesystems, so readers see the old file or the
    new one, never a partial one. On error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_json(path: str | Path, data: Any) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return Path(path)


def write_yaml(path: str | Path, data: Any) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(data, sort_keys=False))
    return Path(path)


def check_writable(path: str | Path, what: str = "output") -> Path:
    """ConfigError unless a file can be written at `path` (its folder is created if need be): for
    outputs written after long work, checked before the work starts."""
    from gkd_deploy.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise ConfigError(f"cannot write the {what} {path}: {error.strerror or error}; choose another path") from None
    return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
