"""Noticing that a directory of manifests changed, by polling a cheap fingerprint.

Polling (every 200 ms by default) rather than inotify: it sees edits through symlink
swaps (ConfigMap volumes), editors that replace files, and network file systems alike,
and its cost is one stat() per manifest."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ctl.sources.files import manifest_paths

Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(root: Path) -> Fingerprint:
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
        entries.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
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
