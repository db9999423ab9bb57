"""Kubernetes label selectors (matchLabels and matchExpressions), as apimachinery
evaluates them: every requirement must hold."""

from __future__ import annotations

from collections.abc import Mapping

from ctl.api import LabelSelector, LabelSelectorRequirement

_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def selector_error(selector: LabelSelector) -> str | None:
    """Why apimachinery would refuse to build this selector, or None."""
    for i, requirement in enumerate(selector.match_expressions):
        where = f"matchExpressions[{i}]"
        if requirement.operator not in _OPERATORS:
            return f"{where}: \"{requirement.operator}\" is not a valid label selector operator"
        if requirement.operator in ("In", "NotIn") and not requirement.values:
            return f"{where}: values must be non-empty for operator {requirement.operator}"
        if requirement.operator in ("Exists", "DoesNotExist") and requirement.values:
            return f"{where}: values must be empty for operator {requirement.operator}"
    return None


def matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether labels satisfy the selector; an empty selector selects everything."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    return all(_holds(requirement, labels) for requirement in selector.match_expressions)


def _holds(requirement: LabelSelectorRequirement, labels: Mapping[str, str]) -> bool:
    present = requirement.key in labels
    if requirement.operator == "In":
        return present and labels[requirement.key] in requirement.values
    if requirement.operator == "NotIn":
        return not present or labels[requirement.key] not in requirement.values
    if requirement.operator == "Exists":
        return present
    if requirement.operator == "DoesNotExist":
        return not present
    return False
