"""ParseCache parses only the documents of a file whose text changed, and gives what
parse_documents gives for the whole file: the same objects, and for a file with any
problem the same messages (document numbers, lines)."""

from __future__ import annotations

import random

from ctl.sources import ParseCache, parse_documents
from ctl.sources.files import split_documents


def service(i: int, port: int) -> str:
    return (f"apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: default}}\n"
            f"spec:\n  ports:\n  - {{name: tcp, port: {port}, protocol: TCP}}\n")


def text_of(ports: list[int], extra: str = "") -> str:
    return "---\n".join(service(i, port) for i, port in enumerate(ports)) + extra


def test_an_edited_document_is_parsed_alone_and_the_others_are_reused() -> None:
    cache = ParseCache()
    ports = [8000 + i for i in range(6)]
    first = cache.parse(text_of(ports), "f.yaml")
    ports[3] = 9999
    second = cache.parse(text_of(ports), "f.yaml")
    assert second == parse_documents(text_of(ports), "f.yaml")
    assert [a is b for a, b in zip(first.objects, second.objects)] == [True, True, True, False, True, True]
    assert second.objects[3].spec.ports[0].port == 9999


def test_random_edits_give_what_parsing_the_whole_file_gives() -> None:
    rng = random.Random(5)
    cache = ParseCache()
    pieces = [service(i, 8000 + i) for i in range(8)]
    odd = [
        "# only a comment\n",
        "kind: Nonsense\napiVersion: example.com/v1\nmetadata: {name: x}\n",  # ignored kind
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: default}\nspec:\n  ports: [{port: -1}]\n",
        "key: [unclosed\n",  # a syntax error ends the file
        "apiVersion: v1\nkind: List\nitems:\n- " + service(20, 81).replace("\n", "\n  ").rstrip() + "\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s21, namespace: default}\nspec:\n  ports:\n  - {port: 82}\n"
        "  selector: {a: b}\n",
        "~\n",
    ]
    whole = 0
    for step in range(300):
        i = rng.randrange(len(pieces))
        pieces[i] = service(i, rng.randrange(8000, 8010)) if rng.random() < 0.8 else rng.choice(odd)
        text = "---\n".join(pieces)
        if rng.random() < 0.1:
            text = "%YAML 1.1\n---\n" + text  # a directive: parsed whole
        if rng.random() < 0.1:
            text = text + "...\n"
        assert cache.parse(text, "f.yaml") == parse_documents(text, "f.yaml"), step
        whole += "f.yaml" not in cache._documents
    assert 30 < whole < 270  # both ways were taken


def test_split_documents_refuses_what_it_cannot_split_safely() -> None:
    assert split_documents("a: 1\n---\nb: 2\n--- \nc: 3\n") == ["a: 1\n", "---\nb: 2\n", "--- \nc: 3\n"]
    assert split_documents("a: 1\n----\nb: 2\n") == ["a: 1\n----\nb: 2\n"]  # not a document start
    assert split_documents("%YAML 1.1\n---\na: 1\n") is None
    assert split_documents("a: 1\n...\n---\nb: 2\n") is None


def test_a_directory_reloaded_after_random_edits_is_what_a_fresh_load_gives(tmp_path, monkeypatch) -> None:
    """load_directory with a cache substitutes edited objects into the last snapshot;
    the generation book renumbers only those: both as a load and a book from scratch
    (but for the book's history) give."""
    from dataclasses import replace as copy

    from ctl.sources import files as files_module
    from ctl.sources import load_directory
    from ctl.sources.generations import GenerationBook
    from tests.unit.test_translate_memo import _edit, _random_world, _write

    rng = random.Random(42)
    cache = ParseCache()
    book = GenerationBook()
    files = _random_world(rng)
    assembled = []
    real = files_module.assemble
    monkeypatch.setattr(files_module, "assemble", lambda results: assembled.append(1) or real(results))
    in_place = 0
    for step in range(60):
        _write(tmp_path, files)
        before = len(assembled)
        loaded = load_directory(tmp_path, cache)
        in_place += len(assembled) == before
        assert loaded == load_directory(tmp_path), step
        numbered, next_book = book.assign(loaded.snapshot)
        expected, _ = copy(book, source=None, numbered=None).assign(loaded.snapshot)
        assert numbered == expected, step
        book = next_book
        files = _edit(files, rng)
    assert in_place > 20


def test_a_file_is_not_read_again_while_its_stat_says_it_is_unchanged(tmp_path, monkeypatch) -> None:
    """Only a file changed long before it was read is trusted by its stat; a rewrite
    moves its ctime (even one that restores size and mtime), and so is read again."""
    import os

    from ctl.sources import files as files_module
    from ctl.sources import load_directory

    path = tmp_path / "a.yaml"
    path.write_text(service(1, 8001))
    reads: list[str] = []
    real = files_module.read_manifest
    monkeypatch.setattr(files_module, "read_manifest", lambda p: reads.append(p.name) or real(p))
    cache = ParseCache()
    load_directory(tmp_path, cache)
    load_directory(tmp_path, cache)
    assert reads == ["a.yaml", "a.yaml"]  # changed just now: its stat is not trusted yet
    old = path.stat().st_mtime_ns - 10**10
    os.utime(path, ns=(old, old))
    # ctime moved with utime: read again; then pretend that read came 3 s later.
    monkeypatch.setattr(files_module.time, "time_ns", lambda: path.stat().st_ctime_ns + 3 * 10**9)
    first = load_directory(tmp_path, cache)
    assert reads == ["a.yaml"] * 3
    again = load_directory(tmp_path, cache)
    assert reads == ["a.yaml"] * 3 and again == first  # trusted: not read
    path.write_text(service(1, 8002).replace("8002", "8009"))  # same size
    os.utime(path, ns=(old, old))  # and the old mtime: the ctime still tells
    edited = load_directory(tmp_path, cache)
    assert reads == ["a.yaml"] * 4 and edited.snapshot.services[0].spec.ports[0].port == 8009
