"""Offline validation and a translation dry run (gwctl validate). Pure but for reading
the files."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ctl.model import IPAddress, NatMode
from ctl.sources import LoadResult, assemble, parse_documents
from ctl.sources.documents import ParseResult
from ctl.sources.files import manifest_paths, read_manifest
from ctl.translate import TranslateConfig, objects_document, render_desired, translate


@dataclass(frozen=True)
class DryRun:
    problems: tuple[str, ...]
    programmed: list[dict]
    objects: list[dict]
    warnings: tuple[str, ...] = ()  # objects of kinds we do not read


def load_paths(paths: list[Path]) -> LoadResult:
    """Files and directories together, as one snapshot (a directory: every manifest
    below it, as the agent reads it)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += manifest_paths(path)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or directory")
    return assemble([_parse_file(f) for f in files])


def _parse_file(path: Path) -> ParseResult:
    text = read_manifest(path)
    if isinstance(text, str):
        return parse_documents(text, str(path))
    return ParseResult(str(path), (), (text,))


def dry_run(paths: list[Path], addresses: tuple[IPAddress, ...], snat: tuple[IPAddress, ...],
            nat: NatMode, now: datetime) -> DryRun:
    loaded = load_paths(paths)
    warnings = tuple(str(i) for i in loaded.ignored)
    if loaded.problems:
        return DryRun(tuple(str(p) for p in loaded.problems), [], [], warnings)
    if not snat:
        snat = tuple({a.version: a for a in addresses}.values())
    translation = translate(loaded.snapshot, TranslateConfig(now=now, addresses=addresses,
                                                             snat_addresses=snat, nat=nat))
    return DryRun((), render_desired(translation.desired),
                  objects_document(translation.statuses), warnings)
