"""The file provider's edge: read a directory of YAML manifests into a snapshot.

Everything but the reading itself is in ``documents`` and stays pure.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ctl.api import K8sObject, ValidationProblem
from ctl.sources.documents import LoadResult, ParseResult, assemble, decode, parse_documents

__all__ = ["LoadResult", "ParseCache", "load_directory", "manifest_paths", "parse_documents", "read_manifest"]

_SUFFIXES = (".yaml", ".yml")


def manifest_paths(root: Path) -> list[Path]:
    """Every *.yaml / *.yml below root, sorted by relative path.

    Hidden entries are skipped: a ConfigMap mounted as a volume shows each file twice,
    once through the ``..data`` symlink and once in a ``..<timestamp>`` directory.
    """
    return sorted(
        (
            path
            for path in root.rglob("*")
            if path.suffix in _SUFFIXES
            and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(root).parts)
        ),
        key=lambda path: path.relative_to(root).as_posix(),
    )


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
        self._documents: dict[str, dict[bytes, tuple[K8sObject, ...]]] = {}

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
        now: dict[bytes, tuple[K8sObject, ...]] = {}
        for document in documents:
            digest = _digest(document)
            found = now.get(digest)
            if found is None:
                found = known.get(digest)
            if found is None:
                parsed = parse_documents(document, name)
                if parsed.problems or parsed.ignored:
                    return None
                found = parsed.objects
            now[digest] = found
            objects.extend(found)
        self._documents[name] = now
        return ParseResult(name, tuple(objects), ())

    def keep_only(self, names: set[str]) -> None:
        for name in self._files.keys() - names:
            del self._files[name]
            self._documents.pop(name, None)


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
        text = read_manifest(file)
        if isinstance(text, ValidationProblem):
            results.append(ParseResult(name, (), (text,)))
            continue
        results.append(parse(text, name))
    if cache is not None:
        cache.keep_only({result.filename for result in results})
    return assemble(results)
