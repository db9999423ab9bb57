"""The file provider's edge: read a directory of YAML manifests into a snapshot.

Everything but the reading itself is in ``documents`` and stays pure.
"""

from __future__ import annotations

from pathlib import Path

from ctl.api import ValidationProblem
from ctl.sources.documents import LoadResult, ParseResult, assemble, parse_documents

__all__ = ["LoadResult", "load_directory", "manifest_paths", "parse_documents"]

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


def load_directory(path: str | Path) -> LoadResult:
    root = Path(path)
    if not root.is_dir():
        problem = ValidationProblem(str(root), "", "not a directory")
        return assemble([ParseResult(str(root), (), (problem,))])
    results = []
    for file in manifest_paths(root):
        name = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            results.append(ParseResult(name, (), (ValidationProblem(name, "", f"cannot read: {error}"),)))
            continue
        results.append(parse_documents(text, name))
    return assemble(results)
