"""YAML text to typed objects, purely: no file system here (see ``files``)."""

from __future__ import annotations

import codecs
import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from sys import intern
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ctl.api import CrdsNotFoundError, IgnoredObject, K8sObject, ObjectRef, ValidationProblem, parse_object
from ctl.api.openapi import format_path
from ctl.sources.snapshot import Snapshot

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that leaves timestamps as text, as Kubernetes' own YAML decoding
    does, so that creationTimestamp reaches the models as an RFC 3339 string.

    The parser asks ``resolve`` for the tag of every node (a million times at 10,000
    routes): answered as PyYAML's resolver does, without its per-call lists, and from a
    memo for the plain scalars that recur (keys, ports, kinds)."""

    def resolve(self, kind: type[Node], value: str, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode and implicit[0]:
            return _plain_scalar_tag(value)
        return _DEFAULT_TAGS[kind]

    # No path resolvers: nothing to track while descending.
    def descend_resolver(self, current_node: Node | None, current_index: object) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# resolve above relies on these: no path resolvers, no resolver for any first character.
assert not _Loader.yaml_path_resolvers and None not in _Loader.yaml_implicit_resolvers
_DEFAULT_TAGS = {ScalarNode: _Loader.DEFAULT_SCALAR_TAG, SequenceNode: _Loader.DEFAULT_SEQUENCE_TAG,
                 MappingNode: _Loader.DEFAULT_MAPPING_TAG}


@functools.lru_cache(maxsize=4096)
def _plain_scalar_tag(value: str) -> str:
    for tag, regexp in _Loader.yaml_implicit_resolvers.get(value[:1], ()):
        if regexp.match(value):
            return tag
    return _Loader.DEFAULT_SCALAR_TAG


@dataclass(frozen=True)
class ParseResult:
    filename: str
    objects: tuple[K8sObject, ...]
    problems: tuple[ValidationProblem, ...]
    # Objects of kinds we do not read: named in a warning, never an error.
    ignored: tuple[IgnoredObject, ...] = ()


@dataclass(frozen=True)
class LoadResult:
    snapshot: Snapshot
    problems: tuple[ValidationProblem, ...]
    ignored: tuple[IgnoredObject, ...] = ()


def decode(data: bytes, filename: str) -> str | ValidationProblem:
    """The text of a manifest file, or why it is not YAML text.

    UTF-8 (a BOM is allowed), and UTF-16 with a BOM as kubectl reads what Windows
    editors write. A NUL byte means a binary file: reported as such rather than as
    whatever a decoder or the YAML reader trips over first.
    """
    for bom, encoding in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as error:
                return ValidationProblem(filename, "", f"not YAML text: invalid UTF-16 at byte {error.start}")
    nul = data.find(b"\0")
    if nul >= 0:
        return ValidationProblem(filename, "", f"not YAML text: a binary file (NUL byte at offset {nul})",
                                 line=data.count(b"\n", 0, nul) + 1)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = data[error.start]
        return ValidationProblem(filename, "", f"not YAML text: invalid UTF-8 (byte 0x{bad:02x} at offset {error.start})",
                                 line=data.count(b"\n", 0, error.start) + 1)


def parse_documents(text: str, filename: str) -> ParseResult:
    """Every object in a multi-document YAML text; empty documents are skipped. The
    items of a ``List`` (what ``kubectl get -o yaml`` writes) count as documents.

    A syntax error ends the file (YAML cannot resynchronise); the documents before it
    are kept and the error is reported with its line.
    """
    objects: list[K8sObject] = []
    problems: list[ValidationProblem] = []
    ignored: list[IgnoredObject] = []

    def take(parsed: K8sObject | ValidationProblem | IgnoredObject) -> None:
        if isinstance(parsed, ValidationProblem):
            problems.append(parsed)
        elif isinstance(parsed, IgnoredObject):
            ignored.append(parsed)
        else:
            objects.append(parsed)

    index = 0
    may_alias = "&" in text or "*" in text or len(text) > MAX_EXPANDED_NODES
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            fast = _plain_document(loader, node, may_alias) if node is not None else None
            if fast is not None:
                document, duplicates = fast
                if document is None:
                    continue
                if _is_list(document):
                    _take_list(document, duplicates, filename, index, take)
                else:
                    take(_parse(document, filename, index, duplicates))
                continue
            # Before constructing: merge keys (<<) are expanded into the node in place.
            refusal = _alias_problem(node) if node is not None else None
            if refusal is not None:
                problems.append(ValidationProblem(filename, f"document {index}", refusal,
                                                  line=node.start_mark.line + 1))
                continue
            duplicates = tuple(_duplicate_fields(node)) if node is not None else ()
            document = loader.construct_document(node)
            if document is None:
                continue
            if _is_list(document):
                _take_list(document, duplicates, filename, index, take)
                continue
            take(_parse(document, filename, index, duplicates))
    except yaml.YAMLError as error:
        problems.append(_yaml_problem(error, filename, text))
    finally:
        loader.dispose()
    return ParseResult(filename, tuple(objects), tuple(problems), tuple(ignored))


_STR_TAG = "tag:yaml.org,2002:str"
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


@functools.lru_cache(maxsize=4096)
def _scalar(tag: str, text: str) -> Any:
    """A non-string scalar as PyYAML's safe constructor builds it (YAML 1.1: 0x1F, 1_000,
    yes/no, ~), once per text: ports and flags recur, and the values are immutable."""
    return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, text))

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# Scalars other than strings, built by the loader's own constructors (YAML 1.1 rules:
# 0x1F, 1_000, yes/no, ~ ...).
_SCALAR_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                          "tag:yaml.org,2002:null"})


class _NotPlain(Exception):
    pass


def _plain_document(loader: Any, root: Node, may_alias: bool = True
                    ) -> tuple[Any, tuple[tuple[str, str], ...]] | None:
    """The document (and its duplicate fields: none) in one walk over its nodes, for the
    documents manifests are made of: no anchors or aliases, no merge keys, no explicit
    tags beyond the core ones, string keys, no field set twice. Anything else returns
    None and takes the general path (alias and duplicate checks, PyYAML's constructor),
    which gives the same result; this one only skips its three separate walks and the
    constructor's generators. ``may_alias=False`` (the text has no ``&`` or ``*``, so
    no anchor or alias, and is too short to reach MAX_EXPANDED_NODES) skips looking
    for a node met twice."""
    seen: set[int] = set()

    def build(node: Node) -> Any:
        if may_alias:
            if id(node) in seen:
                raise _NotPlain  # an alias: shared objects and expansion limits
            seen.add(id(node))
        kind, tag = type(node), node.tag
        if kind is ScalarNode:
            if tag == _STR_TAG:
                # One copy of each value that recurs (namespaces, protocols, parent
                # names...) for as long as the models holding it live.
                return intern(node.value)
            if tag in _SCALAR_TAGS:
                return _scalar(tag, node.value)
            raise _NotPlain
        if kind is MappingNode and tag == _MAP_TAG:
            mapping: dict[Any, Any] = {}
            pairs = node.value
            for key_node, value_node in pairs:
                # String keys only (not merge keys, numbers...): then a field set twice
                # shows as a shorter mapping.
                if type(key_node) is not ScalarNode or key_node.tag != _STR_TAG:
                    raise _NotPlain
                if may_alias:
                    if id(key_node) in seen:
                        raise _NotPlain
                    seen.add(id(key_node))
                mapping[key_node.value] = build(value_node)
            if len(mapping) != len(pairs):
                raise _NotPlain  # duplicate fields: the general path names them and their lines
            return mapping
        if kind is SequenceNode and tag == _SEQ_TAG:
            return [build(item) for item in node.value]
        raise _NotPlain

    try:
        document = build(root)
    except (_NotPlain, RecursionError):
        return None
    if len(seen) > MAX_EXPANDED_NODES:
        return None  # the general path names the limit
    return document, ()


def _take_list(document: dict[str, Any], duplicates: tuple[tuple[str, str], ...], filename: str, index: int,
               take: Callable[[K8sObject | ValidationProblem | IgnoredObject], None]) -> None:
    items = document["items"]
    if items is None:
        return
    if not isinstance(items, list):
        take(ValidationProblem(filename, f"{document['kind']} in document {index}", "expected a list", field="items"))
        return
    for i, item in enumerate(items):
        # The List's own duplicates, re-rooted at each item.
        prefix = f"items[{i}]"
        own = tuple((path.removeprefix(prefix).lstrip("."), message) for path, message in duplicates
                    if path == prefix or path.startswith((prefix + ".", prefix + "[")))
        take(_parse(item, filename, f"{index}, items[{i}]", own))


def _is_list(document: object) -> bool:
    """``v1 List``, and the typed lists (``ServiceList``...) kubectl also accepts."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("kind"), str)
        and document["kind"].endswith("List")
        and isinstance(document.get("apiVersion"), str)
        and "items" in document
    )


def _parse(document: object, filename: str, index: int | str,
           duplicates: tuple[tuple[str, str], ...]) -> K8sObject | ValidationProblem | IgnoredObject:
    try:
        return parse_object(document, filename=filename, index=index, duplicates=duplicates)
    except CrdsNotFoundError:
        raise  # a broken installation, not bad input
    except Exception as error:  # noqa: BLE001 - one odd document must not stop the agent
        return ValidationProblem(filename, f"document {index}", f"could not be validated: {error!r}")


# The most nodes a document may stand for once its aliases are expanded. Manifests come
# nowhere near it; a "billion laughs" document would make every later walk (schema,
# models) take forever. The API server's YAML decoder refuses such documents too.
MAX_EXPANDED_NODES = 1_000_000


def _alias_problem(root: Node) -> str | None:
    """Why the document's aliases cannot be accepted (a cycle, or too large once
    expanded), or None. Counts each node once, with the expanded size of its children."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _Cycle
        open_nodes.add(key)
        children: list[Node] = []
        if isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        total = 1 + sum(size(child) for child in children)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    try:
        expanded = size(root)
    except _Cycle:
        return "an alias refers to a node that contains it (a recursive document)"
    except RecursionError:
        return "nested too deeply"
    if expanded > MAX_EXPANDED_NODES:
        return f"excessive aliasing: {expanded} nodes once aliases are expanded (at most {MAX_EXPANDED_NODES})"
    return None


class _Cycle(Exception):
    pass


def _duplicate_fields(node: Node, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str, str]]:
    """Fields a mapping sets twice. A YAML decoder keeps the last silently; the API
    server's strict decoding refuses them (``key "port" already set in map``)."""
    if isinstance(node, MappingNode):
        seen: dict[object, int] = {}
        for key, value in node.value:
            if key.tag == _MERGE_TAG or not isinstance(key, ScalarNode):
                continue
            line = key.start_mark.line + 1
            if key.value in seen:
                yield format_path((*path, key.value)), f"duplicate field (line {line}; first set on line {seen[key.value]})"
            else:
                seen[key.value] = line
            yield from _duplicate_fields(value, (*path, key.value))
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_fields(item, (*path, i))


def _yaml_problem(error: yaml.YAMLError, filename: str, text: str) -> ValidationProblem:
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    if isinstance(error, yaml.reader.ReaderError):
        # The reader knows only a character offset.
        line = text.count("\n", 0, error.position) + 1
        code = error.character if isinstance(error.character, int) else ord(error.character)
        return ValidationProblem(filename, "", f"not YAML text: character #x{code:04x} ({error.reason})", line=line)
    reason = getattr(error, "problem", None) or str(error)
    return ValidationProblem(filename, "", f"YAML syntax error: {reason}", line=line)


def assemble(results: Iterable[ParseResult]) -> LoadResult:
    """One snapshot from several files; a second object with the same identity is
    reported and dropped, so the first file read (in sorted order) wins."""
    seen: dict[ObjectRef, str] = {}
    objects: list[K8sObject] = []
    problems: list[ValidationProblem] = []
    ignored: list[IgnoredObject] = []
    for result in results:
        problems.extend(result.problems)
        ignored.extend(result.ignored)
        for obj in result.objects:
            if obj.ref in seen:
                problems.append(
                    ValidationProblem(result.filename, str(obj.ref), f"defined twice: already in {seen[obj.ref]}")
                )
                continue
            seen[obj.ref] = result.filename
            objects.append(obj)
    return LoadResult(Snapshot.of(objects), tuple(problems), tuple(ignored))
