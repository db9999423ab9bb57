"""YAML text to typed objects, purely: no file system here (see ``files``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from ctl.api import CrdsNotFoundError, K8sObject, ObjectRef, ValidationProblem, parse_object
from ctl.sources.snapshot import Snapshot

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A safe loader that leaves timestamps as text, as Kubernetes' own YAML decoding
    does, so that creationTimestamp reaches the models as an RFC 3339 string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class ParseResult:
    filename: str
    objects: tuple[K8sObject, ...]
    problems: tuple[ValidationProblem, ...]


@dataclass(frozen=True)
class LoadResult:
    snapshot: Snapshot
    problems: tuple[ValidationProblem, ...]


def parse_documents(text: str, filename: str) -> ParseResult:
    """Every object in a multi-document YAML text; empty documents are skipped.

    A syntax error ends the file (YAML cannot resynchronise); the documents before it
    are kept and the error is reported with its line.
    """
    objects: list[K8sObject] = []
    problems: list[ValidationProblem] = []
    index = 0
    try:
        for document in yaml.load_all(text, Loader=_Loader):  # noqa: S506 - a safe loader
            index += 1
            if document is None:
                continue
            try:
                parsed = parse_object(document, filename=filename, index=index)
            except CrdsNotFoundError:
                raise  # a broken installation, not bad input
            except Exception as error:  # noqa: BLE001 - one odd document must not stop the agent
                parsed = ValidationProblem(filename, f"document {index}", f"could not be validated: {error!r}")
            if isinstance(parsed, ValidationProblem):
                problems.append(parsed)
            elif parsed is not None:
                objects.append(parsed)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        problems.append(ValidationProblem(filename, "", f"YAML syntax error: {reason}", line=line))
    return ParseResult(filename, tuple(objects), tuple(problems))


def assemble(results: Iterable[ParseResult]) -> LoadResult:
    """One snapshot from several files; a second object with the same identity is
    reported and dropped, so the first file read (in sorted order) wins."""
    seen: dict[ObjectRef, str] = {}
    objects: list[K8sObject] = []
    problems: list[ValidationProblem] = []
    for result in results:
        problems.extend(result.problems)
        for obj in result.objects:
            if obj.ref in seen:
                problems.append(
                    ValidationProblem(result.filename, str(obj.ref), f"duplicate of the object in {seen[obj.ref]}; ignored")
                )
                continue
            seen[obj.ref] = result.filename
            objects.append(obj)
    return LoadResult(Snapshot.of(objects), tuple(problems))
