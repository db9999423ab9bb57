"""What every Kubernetes object model shares: configuration, metadata, identity."""

from __future__ import annotations

import weakref
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass as validated_dataclass

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUP = ""
DISCOVERY_GROUP = "discovery.k8s.io"


class ApiModel(BaseModel):
    """Frozen, camelCase on the wire, and tolerant of fields we do not model.

    Unknown fields are dropped the way the API server prunes them, so manifests written
    for newer API versions or other implementations still load.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )

    def model_post_init(self, context: object, /) -> None:
        # pydantic gives every instance its own set of the fields its input named
        # (model_fields_set): 216 bytes or more each, a third of the memory 10,000
        # routes' models take. The models are frozen and pydantic copies the set before
        # changing it (model_copy), so instances naming the same fields share one.
        fields = self.__pydantic_fields_set__
        object.__setattr__(self, "__pydantic_fields_set__", _FIELDS_SETS.setdefault(frozenset(fields), fields))


# One set per combination of fields given (a few hundred at most: the schemas bound them).
_FIELDS_SETS: dict[frozenset[str], set[str]] = {}


class SharedModel(ApiModel):
    """A part that many objects hold equal copies of (a listener's allowedRoutes, a
    Service's ports, a path match): validation gives every equal value the same
    instance, as long as any object holds it. At 10,000 routes about 20 MiB of the
    parsed objects were such copies, each with its own ``__dict__``. Sharing is safe
    because models are frozen values; nothing may tell them apart by identity."""

    def __init__(self, /, **data: Any) -> None:
        # A constructor makes the instance it is given: no shared one replaces it.
        token = _CONSTRUCTING.set(True)
        try:
            super().__init__(**data)
        finally:
            _CONSTRUCTING.reset(token)

    @model_validator(mode="wrap")
    @classmethod
    def _shared(cls, value: Any, handler: Any) -> Any:
        if _CONSTRUCTING.get():
            return handler(value)
        # The same input validates to an equal value, which _share would make the same
        # instance: found by the input, validation is skipped (at 1,000 routes, 8,000
        # conditions {ready: true} and 1,000 identical Service specs). Only successes
        # are remembered, so every problem is still found and named where it is.
        key = _input_key(cls, value)
        if key is not None:
            found = _BY_INPUT.get(key)
            if found is not None:
                return found
        made = _share(handler(value))
        if key is not None:
            _BY_INPUT[key] = made
        return made


_CONSTRUCTING: ContextVar[bool] = ContextVar("constructing", default=False)


# Shared parts by hash, held weakly: an edit that drops the last user of a value drops it.
_SHARED: weakref.WeakValueDictionary[int, SharedModel] = weakref.WeakValueDictionary()


def _share(value: SharedModel) -> SharedModel:
    try:
        key = hash(value)
    except TypeError:  # a field holds a mapping (a label selector): not hashable, not shared
        return value
    found = _SHARED.get(key)
    if found is None:
        _SHARED[key] = value
        return value
    # Another value with the same hash (rare) keeps its place; this one is not shared.
    return found if found.__class__ is value.__class__ and found == value else value


# Shared parts by the input they were validated from, held weakly as _SHARED.
_BY_INPUT: weakref.WeakValueDictionary[tuple[Any, ...], SharedModel] = weakref.WeakValueDictionary()
_SCALARS = (str, int, float, bool, type(None))


def _input_key(cls: type, value: Any) -> tuple[Any, ...] | None:
    """A hashable copy of a YAML-shaped input (mappings, lists, scalars) that tells
    apart every two inputs validation could tell apart, types included (``1`` and
    ``true`` are equal in Python); None for anything else."""
    if type(value) is not dict:
        return None
    try:
        return (cls, _frozen(value))
    except _Unkeyable:
        return None


class _Unkeyable(Exception):
    pass


def _frozen(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return (dict, tuple((key, _frozen(item)) if type(key) is str else _unkeyable() for key, item in value.items()))
    if kind is list:
        return (list, tuple(_frozen(item) for item in value))
    if kind in _SCALARS:
        return (kind, value)
    raise _Unkeyable


def _unkeyable() -> Any:
    raise _Unkeyable


_NOTHING: dict[str, str] = {}


# Every object has one: a slotted dataclass validated like the models, without the
# __dict__ a model instance has (260 bytes each, 8 MiB at 10,000 routes). A spec edit's
# new generation is ``dataclasses.replace(metadata, generation=...)``.
@validated_dataclass(slots=True, config=ApiModel.model_config)
class ObjectMeta:
    name: str
    # Empty for cluster-scoped kinds; the parser fills "default" for namespaced ones, as
    # kubectl does when a manifest names no namespace.
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # The API server starts generations at 1; files carry none.
    generation: int = Field(default=1, ge=1)
    creation_timestamp: datetime | None = None

    def __post_init__(self) -> None:
        # Most objects have no labels and no annotations: one empty mapping for all of
        # them instead of two each (60,000 at 10,000 routes). Objects are frozen values;
        # nothing changes these mappings in place.
        if not self.labels:
            object.__setattr__(self, "labels", _NOTHING)
        if not self.annotations:
            object.__setattr__(self, "annotations", _NOTHING)

    @field_validator("creation_timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        # RFC 3339 always carries a zone; a hand-written file may not. Reading it as UTC
        # keeps every timestamp comparable when routes are ordered by age.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


@dataclass(frozen=True, order=True, slots=True)
class ObjectRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


class K8sObject(ApiModel):
    GROUP: ClassVar[str]
    KIND: ClassVar[str]
    NAMESPACED: ClassVar[bool] = True

    api_version: str
    kind: str
    metadata: ObjectMeta

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def generation(self) -> int:
        return self.metadata.generation

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.KIND, self.metadata.namespace, self.metadata.name)

    def cross_field_problems(self) -> tuple[tuple[str, str], ...]:
        """Checks spanning several fields, as (field path, message) pairs.

        Field-level rules live in the pydantic fields; the few rules that relate fields
        to each other (the API server's validation code, not expressible per field)
        are reported here so each can name its own path.
        """
        return ()
