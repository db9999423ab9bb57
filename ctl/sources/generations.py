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
from dataclasses import dataclass, field

from ctl.api import K8sObject, ObjectRef
from ctl.sources.snapshot import Snapshot


@dataclass(frozen=True)
class _Entry:
    parsed: K8sObject  # as read from the file: an unchanged file yields this same object
    spec: bytes  # fingerprint of everything but metadata
    generation: int


@dataclass(frozen=True)
class GenerationBook:
    entries: Mapping[ObjectRef, _Entry] = field(default_factory=dict)

    def assign(self, snapshot: Snapshot) -> tuple[Snapshot, GenerationBook]:
        """The snapshot with each object's generation, and the book for the next load.

        New objects keep the file's generation (1 when it has none). An object whose
        spec changed gets one more than before, or the file's value if that is higher.
        Objects gone from the files are forgotten: re-created, they start again.
        """
        entries: dict[ObjectRef, _Entry] = {}
        objects = []
        renumbered = False
        for obj in snapshot.objects():
            before = self.entries.get(obj.ref)
            if before is not None and before.parsed is obj:  # the file was not re-parsed
                entry = before
            else:
                spec = _spec_fingerprint(obj)
                if before is None:
                    generation = obj.generation
                elif before.spec == spec:
                    generation = max(before.generation, obj.generation)
                else:
                    generation = max(before.generation + 1, obj.generation)
                entry = _Entry(obj, spec, generation)
            entries[obj.ref] = entry
            objects.append(_with_generation(obj, entry.generation))
            renumbered = renumbered or objects[-1] is not obj
        return (Snapshot.of(objects) if renumbered else snapshot), GenerationBook(entries)


def _spec_fingerprint(obj: K8sObject) -> bytes:
    # A digest, not the text: the book holds one per object, 10,000s of them.
    text = json.dumps(obj.model_dump(mode="json", exclude={"metadata"}), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _with_generation(obj: K8sObject, generation: int) -> K8sObject:
    if obj.generation == generation:
        return obj
    return obj.model_copy(update={"metadata": obj.metadata.model_copy(update={"generation": generation})})
