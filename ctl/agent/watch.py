"""Noticing that a directory of manifests changed, and reporting a burst of changes
once it is over.

What changed is always decided by a cheap fingerprint of the files: one stat() per
manifest, and a hash of those modified in the last two seconds (a same-size rewrite
within one timestamp tick leaves the stat unchanged, only the content tells). When
to look is decided by inotify where the kernel offers it (``notified_changes``): an
edit is seen at once instead of at the next poll, and an idle agent stats nothing but
a safety rescan each second (for what inotify cannot see: network file systems,
changes below a symlinked directory). Where inotify is unavailable, the directory is
polled (``changes``, every 50 ms by default). Both see edits through symlink swaps
(ConfigMap volumes) and editors that replace files, since both compare fingerprints.

An edit often touches several files (``git checkout``, ``kubectl cp`` of a directory, a
script writing one file per object); programming each intermediate state would push
half an edit into the kernel, with routes pointing at Services not written yet. So a
change is reported only after the directory has been quiet for a settle window
(20 ms by default): a burst becomes one reconcile. With inotify "quiet" means no file
event for the window, so a single edit is reported about 20 ms after it is written;
polling, it means an unchanged fingerprint at the polls spanning the window."""

from __future__ import annotations

import hashlib
import logging
import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from inotify_simple import INotify, flags

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
SETTLE_WINDOW = 0.02
RESCAN_INTERVAL = 1.0  # with inotify: a fingerprint anyway, for what it cannot see

log = logging.getLogger(__name__)


def changes(root: Path, interval: float = POLL_INTERVAL, sleep: Callable[[float], None] = time.sleep,
            stop: Callable[[], bool] = lambda: False, settle: float = SETTLE_WINDOW,
            clock: Callable[[], float] = time.monotonic) -> Iterator[Fingerprint]:
    """Yields the fingerprint now, then each time it has changed and stayed unchanged
    for ``settle`` seconds, until stop() is true. A burst that ends where it started
    (a file written and restored) yields nothing."""
    last = fingerprint(root)
    yield last
    yield from _changes_from(root, last, interval, sleep, stop, settle, clock)


# idle(edit_waiting): called while nothing changes; edit_waiting() tells, cheaply, whether
# an edit has arrived since (so that long idle work can give way to it).
Idle = Callable[[Callable[[], bool]], None]


def _nothing(edit_waiting: Callable[[], bool]) -> None:
    pass


def _differs_from(root: Path, last: Fingerprint, interval: float, clock: Callable[[], float]) -> Callable[[], bool]:
    """Polling's edit_waiting: whether the files differ from ``last``, by a fingerprint
    at most every ``interval`` seconds (as soon as polling would see the edit)."""
    checked, differs = clock(), False

    def edit_waiting() -> bool:
        nonlocal checked, differs
        if not differs and clock() - checked >= interval:
            checked, differs = clock(), not same(fingerprint(root), last)
        return differs
    return edit_waiting


def _changes_from(root: Path, last: Fingerprint, interval: float, sleep: Callable[[float], None],
                  stop: Callable[[], bool], settle: float, clock: Callable[[], float],
                  idle: Idle = _nothing) -> Iterator[Fingerprint]:
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
        elif pending is None:
            idle(_differs_from(root, last, interval, clock))


def same(a: Fingerprint, b: Fingerprint) -> bool:
    """Whether two fingerprints describe the same files. A digest is compared only when
    both sides have one: a file that stops being recent loses its digest, which is not
    an edit."""
    if len(a) != len(b):
        return False
    return all(x[:4] == y[:4] and (not x[4] or not y[4] or x[4] == y[4]) for x, y in zip(a, b))


# Everything that can change what a directory listing or a file holds.
_EVENTS = (flags.CREATE | flags.DELETE | flags.MODIFY | flags.CLOSE_WRITE | flags.MOVED_FROM
           | flags.MOVED_TO | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF)


class DirectoryEvents:
    """inotify watches on a directory and its (not hidden) subdirectories: only a
    wake-up signal, what changed is read from the fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._inotify = INotify()
        self._watched: dict[str, int] = {}
        try:
            self._watch_tree()
        except OSError:
            self.close()
            raise
        self._root_wd = self._watched[str(root)]

    def _watch_tree(self) -> None:
        directories = [self.root] + [path for path in self.root.rglob("*") if path.is_dir() and not any(
            part.startswith(".") for part in path.relative_to(self.root).parts)]
        for directory in directories:
            if str(directory) not in self._watched:
                try:
                    self._watched[str(directory)] = self._inotify.add_watch(directory, _EVENTS)
                except FileNotFoundError:
                    if directory == self.root:
                        raise

    def wait(self, timeout: float) -> bool | None:
        """Whether any event arrived within timeout seconds; None once the root
        itself is gone or moved (the watch cannot follow it)."""
        events = self._inotify.read(timeout=max(0, round(timeout * 1000)))
        if not events:
            return False
        for event in events:
            if event.wd == self._root_wd and event.mask & (flags.DELETE_SELF | flags.MOVE_SELF | flags.IGNORED):
                return None
            if event.mask & flags.IGNORED:
                self._watched = {path: wd for path, wd in self._watched.items() if wd != event.wd}
        if any(event.mask & flags.ISDIR for event in events):
            self._watch_tree()  # a new subdirectory: watch it too
        return True

    def pending(self) -> bool:
        """Whether an event waits to be read (it stays there for ``wait``)."""
        readable, _, _ = select.select([self._inotify.fileno()], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self._inotify.close()


def notified_changes(root: Path, events: DirectoryEvents, interval: float = POLL_INTERVAL,
                     stop: Callable[[], bool] = lambda: False, settle: float = SETTLE_WINDOW,
                     rescan: float = RESCAN_INTERVAL, clock: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep,
                     idle: Idle = _nothing) -> Iterator[Fingerprint]:
    """As ``changes``, woken by inotify: yields the fingerprint now, then each time it
    has changed and no file event has arrived for ``settle`` seconds. Between events
    it looks again every ``rescan`` seconds anyway (and calls idle() when nothing
    changed, an edit waiting being an event queued); waits in steps of ``interval``
    so that stop() is seen promptly. If the root goes away, polling takes over."""
    last = fingerprint(root)
    yield last
    next_rescan = clock() + rescan
    while not stop():
        woke = events.wait(interval)
        if woke is None:
            log.warning("the configuration directory was removed or moved; polling it",
                        extra={"event": "watch_polling", "directory": str(root)})
            yield from _changes_from(root, last, interval, sleep, stop, settle, clock, idle)
            return
        if not woke and clock() < next_rescan:
            continue
        # An event, or a rescan: the directory counts as settled after a quiet window.
        while not stop() and (quiet := events.wait(settle)) is not False:
            if quiet is None:
                break  # the next round sees the root gone
        next_rescan = clock() + rescan
        current = fingerprint(root)
        if not same(current, last):
            last = current
            yield last
        elif not woke:
            idle(events.pending)


def watch_directory(root: Path, interval: float = POLL_INTERVAL, stop: Callable[[], bool] = lambda: False,
                    settle: float = SETTLE_WINDOW, sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic,
                    idle: Idle = _nothing) -> Iterator[Fingerprint]:
    """The agent's watcher: inotify where it works, polling where not (no inotify in
    this kernel or container, the watch limit reached, no directory yet). idle() is
    called now and then while nothing changes (in the watcher's thread), with a
    cheap check of whether an edit has arrived since."""
    try:
        events = DirectoryEvents(root)
    except OSError as error:
        log.info("inotify unavailable; polling the configuration directory",
                 extra={"event": "watch_polling", "directory": str(root), "reason": str(error)})
        last = fingerprint(root)
        yield last
        yield from _changes_from(root, last, interval, sleep, stop, settle, clock, idle)
        return
    try:
        yield from notified_changes(root, events, interval, stop=stop, settle=settle, sleep=sleep, clock=clock,
                                    idle=idle)
    finally:
        events.close()
