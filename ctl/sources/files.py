"""The file provider's edge: read a directory of YAML manifests into a snapshot.

Everything but the reading itself is in ``documents`` and stays pure.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import os
import re
import time
from pathlib import Path

from ctl.api import K8sObject, ValidationProblem
from ctl.sources.documents import LoadResult, ParseResult, assemble, decode, parse_documents

__all__ = ["LoadResult", "ParseCache", "load_directory", "manifest_paths", "parse_documents", "read_manifest"]

_SUFFIXES = (".yaml", ".yml")


def manifest_paths(root: Path) -> list[Path]:
    """Every *.yaml / *.yml below root, sorted by relative path; none if root cannot be
    listed.

    Hidden entries are skipped: a ConfigMap mounted as a volume shows each file twice,
    once through the ``..data`` symlink and once in a ``..<timestamp>`` directory.
    Symlinked files count, symlinked directories are not entered (as ``Path.rglob``).
    Walked with ``os.scandir`` on plain strings: the watcher lists the directory on every
    change, and at 10,000 routes (1,600 files) pathlib's rglob and relative_to took
    25 ms of each edit."""
    found: list[tuple[str, str]] = []  # (relative path, path)
    _walk(str(root), "", found)
    found.sort()
    return [Path(path) for _, path in found]


def _walk(directory: str, relative: str, found: list[tuple[str, str]]) -> None:
    try:
        with os.scandir(directory) as listing:
            entries = list(listing)
    except OSError:
        return  # as rglob: a directory that cannot be listed (or is gone) holds nothing
    for entry in entries:
        if entry.name.startswith("."):
            continue
        name = relative + entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                _walk(entry.path, name + "/", found)
            elif entry.name.endswith(_SUFFIXES) and entry.is_file():
                found.append((name, entry.path))
        except OSError:
            continue  # removed while we looked: the next look sees it


def read_manifest(path: Path) -> str | ValidationProblem:
    """A manifest's text, or why it has none (unreadable, binary, not UTF-8)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        return ValidationProblem(str(path), "", f"cannot read: {error.strerror or error}")
    return decode(data, str(path))


# A line that starts a YAML document ("---", alone or before content): PyYAML ends any
# scalar there, so the text between two such lines is one document on its own.
_DOCUMENT_START = re.compile(r"^---(?=[ \t]|$)", re.MULTILINE)
# Directives (%YAML, %TAG) apply to the next document, "..." ends one: such files are
# parsed whole.
_NOT_SPLIT = re.compile(r"^(?:%|\.\.\.(?:[ \t]|$))", re.MULTILINE)


def split_documents(text: str) -> list[str] | None:
    """The text of each document of a multi-document YAML text, or None where splitting
    at document start lines might not give what the YAML parser sees."""
    if _NOT_SPLIT.search(text):
        return None
    bounds = [0, *(m.start() for m in _DOCUMENT_START.finditer(text)), len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


_SETTLED_NS = 2_000_000_000


def _stat_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ParseCache:
    """The parse result of each file of one directory, with a digest of the exact text
    it came from (the text itself would be another copy of the whole directory), and
    the objects of each of its documents by the digest of the document's text.

    parse_documents is a pure function of (text, file name), and its objects are
    immutable, so a file whose text is unchanged since the last load is not parsed and
    validated again: the agent reloads the whole directory on every change, and
    validation dominates that for large configs. In a changed file, only the documents
    whose text changed are parsed (one weight edited in a file of 200 objects: one);
    a file with any problem or ignored object is parsed whole, so that every message
    names the document and line as parse_documents does. Holds only the files of the
    last load.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, ParseResult]] = {}
        # A document's objects: the object itself when it is one, as nearly all are
        # (a tuple for each took 1.4 MiB at 10,000 routes).
        self._documents: dict[str, dict[bytes, K8sObject | tuple[K8sObject, ...]]] = {}
        # The last load: its parse results (in order) and what they were assembled into.
        self.last: tuple[list[ParseResult], LoadResult] | None = None
        self._stats: dict[str, tuple[tuple[int, ...], int]] = {}  # name -> (stat, read at)

    def parse(self, text: str, name: str) -> ParseResult:
        digest = _digest(text)
        cached = self._files.get(name)
        if cached is not None and cached[0] == digest:
            return cached[1]
        result = self._parse_by_document(text, name)
        if result is None:
            self._documents.pop(name, None)
            result = parse_documents(text, name)
        self._files[name] = (digest, result)
        return result

    def _parse_by_document(self, text: str, name: str) -> ParseResult | None:
        documents = split_documents(text)
        if documents is None:
            return None
        known = self._documents.get(name, {})
        objects: list[K8sObject] = []
        now: dict[bytes, K8sObject | tuple[K8sObject, ...]] = {}
        for document in documents:
            digest = _digest(document)
            found = now.get(digest)
            if found is None:
                found = known.get(digest)
            if found is None:
                parsed = parse_documents(document, name)
                if parsed.problems or parsed.ignored:
                    return None
                found = parsed.objects[0] if len(parsed.objects) == 1 else parsed.objects
            now[digest] = found
            if type(found) is tuple:
                objects.extend(found)
            else:
                objects.append(found)
        self._documents[name] = now
        return ParseResult(name, tuple(objects), ())

    def unchanged(self, name: str, stat: tuple[int, ...] | None) -> ParseResult | None:
        """The last result of a file whose stat is what it was when last read, if that
        read came well after its last change: every write since would have moved its
        ctime (which no one can set), and a change within the file system's timestamp
        tick of the read is two seconds behind. Saves reading 12 MB at 10,000 routes."""
        seen = self._stats.get(name)
        if stat is None or seen is None or seen[0] != stat or stat[3] >= seen[1] - _SETTLED_NS:
            return None
        cached = self._files.get(name)
        return cached[1] if cached is not None else None

    def read_at(self, name: str, stat: tuple[int, ...], reading_ns: int) -> None:
        """The file had ``stat`` before it was read at ``reading_ns`` (time.time_ns())."""
        self._stats[name] = (stat, reading_ns)

    def keep_only(self, names: set[str]) -> None:
        for name in self._files.keys() - names:
            del self._files[name]
            self._documents.pop(name, None)
        for name in self._stats.keys() - names:
            del self._stats[name]


def load_directory(path: str | Path, cache: ParseCache | None = None) -> LoadResult:
    """Every manifest below path, as one snapshot. With a cache (one per directory),
    unchanged files are not parsed again; the result is the same either way."""
    root = Path(path)
    if not root.is_dir():
        problem = ValidationProblem(str(root), "", "not a directory")
        return assemble([ParseResult(str(root), (), (problem,))])
    parse = cache.parse if cache is not None else parse_documents
    results = []
    for file in manifest_paths(root):
        name = str(file)
        if cache is not None:
            reading = time.time_ns()
            try:
                stat = _stat_key(os.stat(file))
            except OSError:
                stat = None
            unchanged = cache.unchanged(name, stat)
            if unchanged is not None:
                results.append(unchanged)
                continue
        text = read_manifest(file)
        if isinstance(text, ValidationProblem):
            results.append(ParseResult(name, (), (text,)))
            continue
        results.append(parse(text, name))
        if cache is not None and stat is not None:
            cache.read_at(name, stat, reading)
    if cache is None:
        return assemble(results)
    cache.keep_only({result.filename for result in results})
    loaded = (reassemble(*cache.last, results) if cache.last is not None else None) or assemble(results)
    cache.last = (results, loaded)
    return loaded


_FIELDS = {"GatewayClass": "gateway_classes", "Gateway": "gateways", "TCPRoute": "tcp_routes",
           "UDPRoute": "udp_routes", "TLSRoute": "tls_routes", "HTTPRoute": "http_routes",
           "GRPCRoute": "grpc_routes", "ReferenceGrant": "reference_grants", "Service": "services",
           "EndpointSlice": "endpoint_slices", "Namespace": "namespaces", "Secret": "secrets"}


def reassemble(before: list[ParseResult], loaded: LoadResult, results: list[ParseResult]) -> LoadResult | None:
    """What ``assemble(results)`` gives, from the last load (``before`` assembled into
    ``loaded``) when the files changed only objects in place: the same files, each
    changed file with the same objects (kind, namespace, name) in the same order and
    no problem or ignored object, and none in the last load either. Otherwise None.
    At 10,000 routes assembling (identities, the sort by kind and name) costs more
    than parsing the edited file; this substitutes the changed objects where they are."""
    if loaded.problems or loaded.ignored or len(before) != len(results):
        return None
    substitutes: dict[str, dict[int, K8sObject]] = {}
    for old, new in zip(before, results):
        if old is new:
            continue
        if (old.filename != new.filename or new.problems or new.ignored or old.problems or old.ignored
                or len(old.objects) != len(new.objects)):
            return None
        for a, b in zip(old.objects, new.objects):
            if a is b:
                continue
            field = _FIELDS.get(a.KIND)
            if field is None or a.KIND != b.KIND or (a.namespace, a.name) != (b.namespace, b.name):
                return None
            listed = getattr(loaded.snapshot, field)
            i = bisect.bisect_left(listed, (a.namespace, a.name), key=lambda o: (o.namespace, o.name))
            if i >= len(listed) or listed[i] is not a:
                return None
            substitutes.setdefault(field, {})[i] = b
    if not substitutes:
        return loaded
    fields = {}
    for field, at in substitutes.items():
        listed = list(getattr(loaded.snapshot, field))
        for i, obj in at.items():
            listed[i] = obj
        fields[field] = tuple(listed)
    return LoadResult(dataclasses.replace(loaded.snapshot, **fields), (), ())
