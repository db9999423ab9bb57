"""ReferenceGrant (v1beta1 and v1): a namespace owner's consent to be referenced."""

from __future__ import annotations

from pydantic import Field

from ctl.api.base import GATEWAY_GROUP, ApiModel, K8sObject


class ReferenceGrantFrom(ApiModel):
    group: str
    kind: str
    namespace: str


class ReferenceGrantTo(ApiModel):
    group: str
    kind: str
    # None grants every object of the kind in the grant's namespace.
    name: str | None = None


class ReferenceGrantSpec(ApiModel):
    from_: tuple[ReferenceGrantFrom, ...] = Field(alias="from")
    to: tuple[ReferenceGrantTo, ...]


class ReferenceGrant(K8sObject):
    GROUP = GATEWAY_GROUP
    KIND = "ReferenceGrant"

    spec: ReferenceGrantSpec
