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
