"""Noticing that a directory of manifests changed, by polling a cheap fingerprint.

Polling (every 200 ms by default) rather than inotify: it sees edits through symlink
swaps (ConfigMap volumes), editors that replace files, and network file systems alike,
and its cost is one stat() per manifest. A file modified in the last two seconds is
also hashed: a same-size rewrite within one timestamp tick of the last poll leaves its
stat unchanged, and only its content tells."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ctl.sources.files import manifest_paths

Fingerprint = tuple[tuple[str, int, int, int, str], ...]
RECENT_NS = 2_000_000_000


def fingerprint(root: Path, now_ns: int | None = None) -> Fingerprint:
    now_ns = time.time_ns() if now_ns is None else now_ns
    entries = []
    try:
        paths = manifest_paths(root)
    except OSError:
        return ()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue  # removed between listing and stat: the next poll sees it
        digest = ""
        if now_ns - st.st_mtime_ns < RECENT_NS:
            try:
                digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
            except OSError:
                continue
        entries.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino, digest))
    return tuple(entries)


def changes(root: Path, interval: float = 0.2, sleep: Callable[[float], None] = time.sleep,
            stop: Callable[[], bool] = lambda: False) -> Iterator[Fingerprint]:
    """Yields the fingerprint now, then each time it changes, until stop() is true."""
    last = fingerprint(root)
    yield last
    while not stop():
        sleep(interval)
        current = fingerprint(root)
        if current != last:
            last = current
            yield current
