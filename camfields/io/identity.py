"""What data a fit used: a file's or folder's resolved path, size and content hash.

A run folder records it (``config.json``, key ``"fitted_data"``) so that resuming with other
data is refused. Files are hashed in 1 MiB chunks (a 1 GB video reads once, in about a second
or two, never whole into memory); a folder's hash covers every file under it, in sorted order,
by relative path and content, so renaming, adding, removing or changing a file changes it.

Example:
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = path.write_text("abc")
    >>> data_identity(path)["sha256"][:12], data_identity(path)["bytes"]
    ('ba7816bf8f01', 3)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from camfields.errors import CamfieldsError

CHUNK = 1 << 20


def _hash_file(path: Path, digest: Any) -> int:
    """Feed ``path``'s bytes to ``digest``; returns the byte count."""
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size


def data_identity(path: Path) -> dict[str, Any]:
    """{"path", "bytes", "sha256"} of a file, plus "files" (their count) for a folder."""
    path = Path(path).resolve()
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            size = 0
            for file in files:
                inner = hashlib.sha256()
                size += _hash_file(file, inner)
                digest.update(f"{file.relative_to(path).as_posix()}\0{inner.hexdigest()}\n".encode())
            return {"path": str(path), "files": len(files), "bytes": size, "sha256": digest.hexdigest()}
        return {"path": str(path), "bytes": _hash_file(path, digest), "sha256": digest.hexdigest()}
    except OSError as e:
        raise CamfieldsError(f"cannot read {path} to record what was fitted: {e.strerror or e}") from None


def describe(identity: dict[str, Any]) -> str:
    """One phrase naming recorded data, e.g. '/data/a.png (1,234 bytes, sha256 ba7816bf8f01)'."""
    if "sha256" not in identity:
        return str(identity.get("path", identity))
    files = f"{identity['files']} files, " if "files" in identity else ""
    return f"{identity['path']} ({files}{identity['bytes']:,} bytes, sha256 {identity['sha256'][:12]})"
