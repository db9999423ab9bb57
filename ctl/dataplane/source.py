"""Assembling a BPF entry file and its library headers into one source text.

bcc rewrites map accesses (`frontends.lookup(&key)`) only in the main file it is
given, not in files it #includes, so the library's own headers are inlined here. Each
inlined piece starts with a #line directive, so compiler errors still name the header
and line they come from. Pure: takes a file reader, returns text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

# A link to the top-level bpf/ in a checkout, the copied sources in an installed package.
BPF_DIR = Path(__file__).resolve().parent / "bpf"

_LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def expand_includes(
    entry: Path, read: Callable[[Path], str] = Path.read_text, names_under: Path | None = None
) -> str:
    """Returns `entry` with every local ("quoted") include inlined once, depth first.

    System includes (<...>) are left for the compiler. A header included twice is
    inlined only the first time, as its include guard would do anyway. The #line
    directives name absolute paths, or paths under `names_under` when it is given: the
    text a build is identified by must not depend on where the checkout or package sits.
    """
    seen: set[Path] = set()
    root = names_under.resolve() if names_under is not None else None

    def name(path: Path) -> Path:
        return path.relative_to(root) if root is not None and path.is_relative_to(root) else path

    def inline(path: Path) -> list[str]:
        path = path.resolve()
        if path in seen:
            return []
        seen.add(path)
        out = [f'#line 1 "{name(path)}"']
        for number, line in enumerate(read(path).splitlines(), start=1):
            match = _LOCAL_INCLUDE.match(line)
            if match:
                out.extend(inline(path.parent / match.group(1)))
                out.append(f'#line {number + 1} "{name(path)}"')
            else:
                out.append(line)
        return out

    return "\n".join(inline(entry)) + "\n"
