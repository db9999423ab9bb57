"""`gwctl run` starts loading the programs before it imports the rest of the agent
(ctl.agent.early_load): what it must not do meanwhile."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from ctl.agent import early_load
from ctl.agent.run import AgentError, AgentOptions, load_and_attach
from ctl.dataplane.loader import DataplaneSpec


def test_a_missing_interface_is_named_before_anything_loads(tmp_path: Path) -> None:
    pin_dir = tmp_path / "pins"
    threads = threading.active_count()
    with pytest.raises(ValueError, match="interface 'xg-none0' does not exist in this network namespace"):
        early_load.start(DataplaneSpec(pin_dir=pin_dir), ("lo", "xg-none0"))
    assert threading.active_count() == threads  # no load started
    assert not pin_dir.exists()


def test_programs_loaded_for_other_sizes_are_refused(tmp_path: Path) -> None:
    options = AgentOptions(config_dir=tmp_path, interfaces=("lo",), pin_dir=tmp_path / "pins", max_services=1024)
    early = early_load.EarlyLoad(DataplaneSpec(pin_dir=tmp_path / "pins", max_services=2048), Future())
    with pytest.raises(AgentError, match="the programs were loaded for"):
        load_and_attach(options.dataplane_spec, options, {}, early)


def test_the_options_give_the_spec_the_cli_loads_early(tmp_path: Path) -> None:
    options = AgentOptions(config_dir=tmp_path, interfaces=("lo",), pin_dir=tmp_path / "pins", maglev_size=251,
                           max_services=1024, max_backends=4096, ct_size=8192, program_cache=tmp_path / "cache")
    assert options.dataplane_spec == DataplaneSpec(pin_dir=tmp_path / "pins", maglev_size=251, max_services=1024,
                                                   max_backends=4096, ct_size=8192, program_cache=tmp_path / "cache")
