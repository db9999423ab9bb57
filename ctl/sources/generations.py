"""metadata.generation for objects read from files, as the API server keeps it. Pure.

The API server starts an object's generation at 1 and adds one whenever its spec (any
field outside metadata and status) changes; controllers report the generation they
acted on as observedGeneration, and clients wait for the two to meet. A directory of
YAML has no such counter: files carry no generation, or a stale one copied from
`kubectl get -o yaml`. The file provider keeps a ``GenerationBook`` from load to load
and numbers each object the same way. The book lives with the agent, so its numbers
start again at 1 (or at the file's value) when the agent restarts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields as dataclass_fields, replace

from ctl.api import K8sObject, ObjectRef
from ctl.sources.snapshot import Snapshot, replaced_positions


@dataclass(frozen=True, slots=True)
class _Entry:
    """An object whose generation is not the one it was read with."""

    parsed: K8sObject  # as read from the file: an unchanged file yields this same object
    generation: int


# An entry is the object as read (an unchanged file yields this same object) when its
# generation is the one it was read with, as nearly all are; else an _Entry. No spec
# fingerprint is kept: it is computed from the object when a new one replaces it (30,000
# digests at 10,000 routes were 3 MiB, and a cold start computed them all for nothing).
Entry = K8sObject | _Entry


def _parsed(entry: Entry) -> K8sObject:
    return entry.parsed if type(entry) is _Entry else entry


def _generation(entry: Entry) -> int:
    return entry.generation if type(entry) is _Entry else entry.metadata.generation


@dataclass(frozen=True)
class GenerationBook:
    entries: Mapping[ObjectRef, Entry] = field(default_factory=dict)
    # The last snapshot numbered and its result: an edit that replaced objects in place
    # renumbers only those (at 10,000 routes, 30,000 objects would be looked at).
    source: Snapshot | None = None
    numbered: Snapshot | None = None

    def assign(self, snapshot: Snapshot) -> tuple[Snapshot, GenerationBook]:
        """The snapshot with each object's generation, and the book for the next load.

        New objects keep the file's generation (1 when it has none). An object whose
        spec changed gets one more than before, or the file's value if that is higher.
        Objects gone from the files are forgotten: re-created, they start again.
        """
        if self.source is not None and self.numbered is not None:
            edited = self._assign_in_place(snapshot)
            if edited is not None:
                return edited
        entries: dict[ObjectRef, Entry] = {}
        objects = []
        renumbered = False
        for obj in snapshot.objects():
            before = self.entries.get(obj.ref)
            if before is not None and _parsed(before) is obj:  # the file was not re-parsed
                entry = before
            else:
                entry = _next_entry(before, obj)
            entries[obj.ref] = entry
            objects.append(_with_generation(obj, _generation(entry)))
            renumbered = renumbered or objects[-1] is not obj
        numbered = Snapshot.of(objects) if renumbered else snapshot
        return numbered, GenerationBook(entries, snapshot, numbered)

    def _assign_in_place(self, snapshot: Snapshot) -> tuple[Snapshot, GenerationBook] | None:
        """As assign, when only objects were replaced in place since the last snapshot
        (the same kinds, namespaces and names in the same order); else None."""
        assert self.source is not None and self.numbered is not None
        changed: dict[str, list[int]] = {}
        for name in _KINDS:
            old, new = getattr(self.source, name), getattr(snapshot, name)
            if old is new:
                continue
            positions = replaced_positions(old, new)
            if positions is None:
                return None
            if positions:
                changed[name] = positions
        if not changed:
            numbered = snapshot if self.numbered is self.source else self.numbered
            return numbered, GenerationBook(self.entries, snapshot, numbered)
        entries = dict(self.entries)
        fields = {}
        for name, positions in changed.items():
            numbered = list(getattr(self.numbered, name))
            for i in positions:
                obj = getattr(snapshot, name)[i]
                entry = entries[obj.ref] = _next_entry(entries.get(obj.ref), obj)
                numbered[i] = _with_generation(obj, _generation(entry))
            fields[name] = tuple(numbered)
        numbered_snapshot = replace(self.numbered, **fields)
        return numbered_snapshot, GenerationBook(entries, snapshot, numbered_snapshot)


_KINDS = tuple(f.name for f in dataclass_fields(Snapshot))


def _spec_fingerprint(obj: K8sObject) -> bytes:
    # A digest, not the text: the book holds one per object, 10,000s of them.
    text = json.dumps(obj.model_dump(mode="json", exclude={"metadata"}), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _next_entry(before: Entry | None, obj: K8sObject) -> Entry:
    """The book's entry for `obj` given its last one: a spec change bumps the generation,
    the file's own value wins if higher, a new object starts at the file's value."""
    if before is None:
        return obj
    if _spec_fingerprint(_parsed(before)) == _spec_fingerprint(obj):
        generation = max(_generation(before), obj.generation)
    else:
        generation = max(_generation(before) + 1, obj.generation)
    return obj if generation == obj.generation else _Entry(obj, generation)


def _with_generation(obj: K8sObject, generation: int) -> K8sObject:
    if obj.generation == generation:
        return obj
    return obj.model_copy(update={"metadata": replace(obj.metadata, generation=generation)})
