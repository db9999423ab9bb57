"""Capacity defaults have one source (ctl/capacity.py) that every layer starts from."""

from __future__ import annotations

import inspect
from dataclasses import astuple
from pathlib import Path

import pytest

from ctl import cli
from ctl.agent.run import AgentOptions
from ctl.capacity import DEFAULT, Capacity
from ctl.dataplane import maglev
from ctl.dataplane.loader import DataplaneSpec
from ctl.dataplane.plan import Limits


def test_every_layer_defaults_to_the_one_capacity() -> None:
    options = AgentOptions(config_dir=Path("."), interfaces=("eth0",))
    spec = DataplaneSpec()
    run_defaults = {name: p.default for name, p in inspect.signature(cli.run).parameters.items()}
    for field in ("maglev_size", "max_services", "max_backends", "ct_size"):
        expected = getattr(DEFAULT, field)
        assert getattr(options, field) == expected, f"AgentOptions.{field}"
        assert getattr(spec, field) == expected, f"DataplaneSpec.{field}"
        assert run_defaults[field] == expected, f"gwctl run --{field.replace('_', '-')}"
    assert spec.capacity == DEFAULT
    assert Limits() == DEFAULT
    assert maglev.DEFAULT_SIZE == DEFAULT.maglev_size
    assert astuple(DEFAULT) == (16381, 4096, 65536, 262144)


@pytest.mark.parametrize(("sizes", "message"), [
    (dict(maglev_size=16384), "Maglev table size 16384 is not prime"),
    (dict(max_services=0), "max_services must be positive"),
    (dict(ct_size=-1), "ct_size must be positive"),
])
def test_impossible_capacities_are_refused(sizes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Capacity(**sizes)
    with pytest.raises(ValueError, match=message):
        DataplaneSpec(**sizes)
