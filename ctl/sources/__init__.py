"""Where objects come from. Every provider yields the same immutable ``Snapshot``."""

from ctl.sources.documents import LoadResult, ParseResult, assemble, parse_documents
from ctl.sources.files import ParseCache, load_directory
from ctl.sources.snapshot import Snapshot

__all__ = ["LoadResult", "ParseCache", "ParseResult", "Snapshot", "assemble", "load_directory", "parse_documents"]
