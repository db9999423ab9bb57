"""Gateway API semantics, purely: a ``Snapshot`` becomes the desired data plane
(``ctl.model.DesiredState``), the desired Envoy configuration
(``ctl.l7model.L7State``) and the status of every object we own."""

from ctl.translate.config import DEFAULT_CONTROLLER_NAME, TranslateConfig
from ctl.translate.l7 import apply_l7_feedback
from ctl.translate.render import render_desired
from ctl.translate.status import (
    Condition,
    ListenerStatus,
    ObjectStatus,
    RouteParentStatus,
    format_time,
    objects_document,
    status_to_k8s,
)
from ctl.translate.translate import Translation, translate

__all__ = [
    "DEFAULT_CONTROLLER_NAME",
    "Condition",
    "ListenerStatus",
    "ObjectStatus",
    "RouteParentStatus",
    "TranslateConfig",
    "apply_l7_feedback",
    "Translation",
    "format_time",
    "objects_document",
    "render_desired",
    "status_to_k8s",
    "translate",
]
