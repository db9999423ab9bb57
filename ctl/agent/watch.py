"""Noticing that a directory of manifests changed, by polling a cheap fingerprint, and
reporting a burst of changes once it is over.

Polling (every 50 ms by default) rather than inotify: it sees edits through symlink
swaps (ConfigMap volumes), editors that replace files, and network file systems alike,
and its cost is one stat() per manifest. A file modified in the last two seconds is
also hashed: a same-size rewrite within one timestamp tick of the last poll leaves its
stat unchanged, and only its content tells.

An edit often touches several files (``git checkout``, ``kubectl cp`` of a directory, a
script writing one file per object); programming each intermediate state would push
half an edit into the kernel, with routes pointing at Services not written yet. So a
change is reported only after the directory has been quiet for a settle window
(120 ms by default): a burst becomes one reconcile, and a single edit is live in well
under a second (at most one poll interval to notice it, the window, one more poll)."""

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


POLL_INTERVAL = 0.05
SETTLE_WINDOW = 0.12


def changes(root: Path, interval: float = POLL_INTERVAL, sleep: Callable[[float], None] = time.sleep,
            stop: Callable[[], bool] = lambda: False, settle: float = SETTLE_WINDOW,
            clock: Callable[[], float] = time.monotonic) -> Iterator[Fingerprint]:
    """Yields the fingerprint now, then each time it has changed and stayed unchanged
    for ``settle`` seconds, until stop() is true. A burst that ends where it started
    (a file written and restored) yields nothing."""
    last = fingerprint(root)
    yield last
    pending: Fingerprint | None = None  # the newest state seen while the burst goes on
    since = 0.0  # when pending was first seen: the quiet window counts from there
    while not stop():
        sleep(interval)
        current = fingerprint(root)
        now = clock()
        if not same(current, last if pending is None else pending):
            pending, since = current, now
        if pending is not None and now - since >= settle:
            if not same(pending, last):
                last = pending
                yield last
            pending = None


def same(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether two fingerprints describe the same files. A digest is compared only when
    both sides have one: a file that stops being recent loses its digest, which is not
    an edit."""
    if len(a) != len(b):
        return False
    return all(x[:4] == y[:4] and (not x[4] or not y[4] or x[4] == y[4]) for x, y in zip(a, b))
