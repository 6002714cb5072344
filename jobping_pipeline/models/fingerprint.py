"""A content fingerprint of a local model folder: the weights, not the folder's name.

A model configured by path can be replaced in place (a fine-tune saved over the old one, with the
same file names and even sizes). Its vectors must not count as the old model's, nor may a cached
conversion of the old weights serve the new ones: the model id of a local folder and the key of
its conversion both carry this fingerprint. Hashing a folder of weights takes about a second per
100 MB, so each file's digest is cached on disk by its path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

FINGERPRINT_LENGTH = 12
_CACHE_FILE = Path.home() / ".cache" / "jobping-pipeline" / "file-digests.json"
_lock = threading.Lock()


def _model_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and ".cache" not in path.relative_to(folder).parts)


def _file_digest(path: Path, cache: dict[str, list]) -> tuple[str, bool]:
    """(sha256 of the file, whether it had to be read)."""
    stat = path.stat()
    key = str(path.resolve())
    cached = cache.get(key)
    if cached is not None and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
        return cached[2], False
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    cache[key] = [stat.st_size, stat.st_mtime_ns, digest.hexdigest()]
    return cache[key][2], True


def folder_fingerprint(folder: Path, cache_file: Path | None = None) -> str:
    """A short digest of every file of ``folder`` (relative names and contents)."""
    cache_file = cache_file or _CACHE_FILE
    with _lock:
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
        combined = hashlib.sha256()
        changed = False
        for path in _model_files(folder):
            digest, read = _file_digest(path, cache)
            changed |= read
            combined.update(f"{path.relative_to(folder)}\0{digest}\n".encode())
        if changed:
            try:
                cache_file.parent.mkdir(parents=True, exist_ok=True)
                scratch = cache_file.with_suffix(f".{os.getpid()}.tmp")
                scratch.write_text(json.dumps(cache))
                scratch.replace(cache_file)
            except OSError:
                pass  # a read-only home: the digests are computed again next time
    return combined.hexdigest()[:FINGERPRINT_LENGTH]
