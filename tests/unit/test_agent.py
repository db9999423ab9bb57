"""The agent's parts, without the kernel: the reconciler with a recording `program`
and an injected clock, the directory watcher with an injected sleep, the JSON log
formatter, the HTTP server and the reconcile metrics."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from ctl.agent import logs, watch
from ctl.agent.metrics import AgentMetrics, DataplaneCollector
from ctl.agent.reconciler import AgentState, Reconciler, ReconcileOutcome
from ctl.agent.server import AgentServer
from ctl.model import DesiredState
from ctl.dataplane.plan import DataplaneConfig, Plan, PlanError, PutConfig
from ctl.sources import LoadResult, assemble, load_directory, parse_documents
from ctl.translate import Condition, ObjectStatus, TranslateConfig, Translation, translate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "standalone"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
CONFIG = TranslateConfig(now=datetime(2000, 1, 1, tzinfo=UTC), snat_addresses=(ip_address("10.99.10.1"),))


# -- inputs -------------------------------------------------------------------------------


def example_documents() -> list[str]:
    return [doc for f in sorted(EXAMPLES.glob("*.yaml")) for doc in f.read_text().split("\n---\n")]


def load(documents: list[str]) -> LoadResult:
    return assemble([parse_documents("\n---\n".join(documents), "manifests.yaml")])


def examples() -> LoadResult:
    loaded = load(example_documents())
    assert not loaded.problems
    return loaded


def examples_without_be_c() -> LoadResult:
    """be-c's Service and EndpointSlice gone; both routes still refer to it."""
    loaded = load([d for d in example_documents()
                   if not ("name: be-c" in d and ("kind: Service" in d or "kind: EndpointSlice" in d))])
    assert not loaded.problems and len(loaded.snapshot.routes) == 2
    return loaded


def invalid_input() -> LoadResult:
    loaded = load([*example_documents(), """\
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: heavy, namespace: default}
spec:
  parentRefs: [{name: edge}]
  rules:
  - backendRefs: [{name: be-a, port: 8080, weight: 2000000}]
"""])
    assert loaded.problems
    return loaded


# -- test doubles -------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime = T0):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeDataPath:
    """Stands in for the map writer: records what it was asked to program and answers
    with a plan of `ops` writes, or raises `error`."""

    ops: int = 3
    error: Exception | None = None
    programmed: list[DesiredState] = field(default_factory=list)

    def program(self, desired: DesiredState) -> Plan:
        self.programmed.append(desired)
        if self.error is not None:
            raise self.error
        return Plan(ops=(PutConfig(DataplaneConfig()),) * self.ops, service_ids={}, backend_ids={})


def reconciler(datapath: FakeDataPath, clock: Clock) -> Reconciler:
    return Reconciler(program=datapath.program, config=CONFIG, clock=clock)


def all_conditions(translation: Translation) -> dict[tuple, Condition]:
    found = {}
    for s in translation.statuses:
        key = (s.kind, s.namespace, s.name)
        for c in s.conditions:
            found[(*key, c.type)] = c
        for listener in s.listeners:
            for c in listener.conditions:
                found[(*key, listener.name, c.type)] = c
        for parent in s.parents:
            for c in parent.conditions:
                found[(*key, parent.parent_ref.section_name, c.type)] = c
    return found


# -- reconciler -----------------------------------------------------------------------------


def test_valid_input_is_translated_and_programmed_once() -> None:
    datapath, clock = FakeDataPath(ops=5), Clock()
    rec = reconciler(datapath, clock)
    loaded = examples()

    outcome = rec.reconcile(loaded)

    assert outcome.applied and outcome.problems == () and outcome.writes == 5
    expected = translate(loaded.snapshot, replace(CONFIG, now=T0))
    assert datapath.programmed == [expected.desired]
    assert {str(s.frontend) for s in datapath.programmed[0].services} == {"10.99.100.1:80/TCP", "10.99.100.1:53/UDP"}
    state = rec.state
    assert state.translation == expected
    assert (state.ready, state.reconciles, state.errors, state.problems) == (True, 1, 0, ())
    assert state.last_outcome is outcome
    assert rec.statuses == expected.statuses


def test_the_clock_stamps_condition_transitions() -> None:
    rec = reconciler(FakeDataPath(), Clock(T0 + timedelta(hours=5)))
    rec.reconcile(examples())
    assert {c.last_transition_time for c in all_conditions(rec.state.translation).values()} == {
        T0 + timedelta(hours=5)}


def test_invalid_input_is_not_programmed_and_the_last_good_state_keeps_serving() -> None:
    datapath, clock = FakeDataPath(), Clock()
    rec = reconciler(datapath, clock)
    rec.reconcile(examples())
    good = rec.state.translation

    clock.advance(10)
    outcome = rec.reconcile(invalid_input())

    assert not outcome.applied and outcome.writes == 0
    assert len(datapath.programmed) == 1  # only the first, good input
    assert any("TCPRoute default/heavy" in p and "weight" in p for p in outcome.problems)
    state = rec.state
    assert state.translation is good
    assert state.problems == outcome.problems
    assert (state.ready, state.reconciles, state.errors) == (True, 2, 1)


def test_invalid_first_input_leaves_the_agent_not_ready() -> None:
    datapath = FakeDataPath()
    rec = reconciler(datapath, Clock())
    outcome = rec.reconcile(invalid_input())
    assert not outcome.applied
    assert datapath.programmed == []
    assert (rec.state.translation, rec.state.ready, rec.state.errors) == (None, False, 1)
    assert rec.statuses == ()


def test_good_input_after_bad_clears_the_problems() -> None:
    rec = reconciler(FakeDataPath(), Clock())
    rec.reconcile(invalid_input())
    outcome = rec.reconcile(examples())
    assert outcome.applied
    assert (rec.state.problems, rec.state.ready, rec.state.reconciles, rec.state.errors) == ((), True, 2, 1)


def test_plan_error_is_reported_and_the_last_good_translation_kept() -> None:
    datapath, clock = FakeDataPath(), Clock()
    rec = reconciler(datapath, clock)
    rec.reconcile(examples())
    good = rec.state.translation

    datapath.error = PlanError("5000 frontends exceed the data path's capacity of 4096")
    clock.advance(10)
    outcome = rec.reconcile(examples_without_be_c())

    assert not outcome.applied and outcome.writes == 0
    assert outcome.problems == ("cannot program the data path: 5000 frontends exceed the data path's capacity of 4096",)
    assert len(datapath.programmed) == 2  # it was asked, and refused
    assert rec.state.translation is good
    assert (rec.state.ready, rec.state.errors) == (True, 1)


def test_map_write_failure_is_reported_not_raised() -> None:
    datapath = FakeDataPath(error=OSError(1, "Operation not permitted"))
    rec = reconciler(datapath, Clock())
    outcome = rec.reconcile(examples())
    assert not outcome.applied
    assert outcome.problems == ("writing BPF maps failed: [Errno 1] Operation not permitted",)
    assert (rec.state.translation, rec.state.ready) == (None, False)


@pytest.mark.parametrize("error", [RuntimeError("boom"), TypeError("'<' not supported"), KeyError("x")],
                         ids=["runtime", "type", "key"])
def test_an_exception_inside_a_reconcile_is_a_problem_not_the_end(error: Exception,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    datapath, clock = FakeDataPath(), Clock()
    rec = reconciler(datapath, clock)
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.observe(rec.reconcile(examples()))
    good = rec.state.translation

    datapath.error = error
    clock.advance(10)
    with caplog.at_level(logging.ERROR, logger="ctl.agent.reconciler"):
        outcome = rec.reconcile(examples_without_be_c())
    metrics.observe(outcome)

    assert not outcome.applied and outcome.writes == 0
    assert outcome.problems == (f"internal error while reconciling (a defect; please report it): {error!r}",)
    assert rec.state.translation is good  # the last good state is what the agent reports
    assert (rec.state.ready, rec.state.reconciles, rec.state.errors, rec.state.problems) == (True, 2, 1, outcome.problems)
    logged = [r for r in caplog.records if getattr(r, "event", None) == "reconcile_failed"]
    assert len(logged) == 1 and logged[0].exc_info[1] is error  # the traceback goes to the log
    assert registry.get_sample_value("xdpgw_reconcile_errors_total") == 1

    datapath.error = None  # the next edit is programmed as usual
    assert rec.reconcile(examples_without_be_c()).applied
    assert rec.state.problems == ()


def test_a_translation_ahead_is_reused_by_the_reconcile_of_the_same_input() -> None:
    datapath = FakeDataPath()
    rec = reconciler(datapath, Clock())
    loaded = examples()

    rec.translate_ahead(loaded)
    assert datapath.programmed == [] and rec.state == AgentState()  # nothing programmed, recorded or ready

    outcome = rec.reconcile(loaded)
    expected = translate(loaded.snapshot, replace(CONFIG, now=T0))
    assert outcome.applied and rec.state.translation == expected and datapath.programmed == [expected.desired]
    assert (rec.translator.full, rec.translator.incremental) == (1, 1)  # the reconcile edited nothing


def test_input_with_problems_is_not_translated_ahead() -> None:
    rec = reconciler(FakeDataPath(), Clock())
    rec.translate_ahead(invalid_input())
    assert rec.translator.last is None and rec.translator.full == 0


def test_a_translation_that_fails_ahead_is_left_to_the_reconcile_to_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctl.translate import incremental

    def defect(*args, **kwargs):
        raise RuntimeError("boom")

    rec = reconciler(FakeDataPath(), Clock())
    monkeypatch.setattr(incremental, "translate_pass", defect)
    rec.translate_ahead(examples())
    assert rec.translator.last is None and rec.state == AgentState()
    outcome = rec.reconcile(examples())
    assert outcome.problems == ("internal error while reconciling (a defect; please report it): RuntimeError('boom')",)

    monkeypatch.undo()
    assert rec.reconcile(examples()).applied


def test_objects_of_unread_kinds_are_logged_once_and_kept_in_the_state(caplog: pytest.LogCaptureFixture) -> None:
    rec = reconciler(FakeDataPath(), Clock())
    widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\n"
    loaded = load([*example_documents(), widget])
    assert not loaded.problems
    with caplog.at_level(logging.WARNING, logger="ctl.agent.reconciler"):
        first = rec.reconcile(loaded)
        rec.reconcile(loaded)
    assert first.applied  # a warning, not a problem
    warning = "manifests.yaml: Widget default/w: example.com/v1 Widget is not a kind xdp-gateway reads; ignored"
    assert rec.state.ignored == (warning,)
    assert [(r.levelname, r.object) for r in caplog.records if getattr(r, "event", None) == "ignored"] == [
        ("WARNING", warning)]
    rec.reconcile(examples())
    assert rec.state.ignored == ()


def test_last_transition_time_is_stable_for_the_same_input() -> None:
    clock = Clock()
    rec = reconciler(FakeDataPath(), clock)
    rec.reconcile(examples())
    first = all_conditions(rec.state.translation)

    clock.advance(3600)
    rec.reconcile(examples())
    second = all_conditions(rec.state.translation)

    assert second == first
    assert {c.last_transition_time for c in second.values()} == {T0}


def test_last_transition_time_moves_only_for_conditions_whose_meaning_changed() -> None:
    clock = Clock()
    rec = reconciler(FakeDataPath(), clock)
    rec.reconcile(examples())
    clock.advance(3600)
    rec.reconcile(examples())
    clock.advance(60)
    later = clock.now

    assert rec.reconcile(examples_without_be_c()).applied
    after = all_conditions(rec.state.translation)

    for route in ("db", "dns"):
        resolved = next(c for k, c in after.items() if k[2] == route and k[-1] == "ResolvedRefs")
        accepted = next(c for k, c in after.items() if k[2] == route and k[-1] == "Accepted")
        assert (resolved.status, resolved.reason, resolved.last_transition_time) == ("False", "BackendNotFound", later)
        assert (accepted.status, accepted.last_transition_time) == ("True", T0)
    gateway = [c for k, c in after.items() if k[0] == "Gateway"]
    assert gateway and {c.last_transition_time for c in gateway} == {T0}


def test_a_rejected_input_does_not_disturb_transition_times() -> None:
    clock = Clock()
    rec = reconciler(FakeDataPath(), clock)
    rec.reconcile(examples())
    clock.advance(60)
    rec.reconcile(invalid_input())
    clock.advance(60)
    rec.reconcile(examples())
    assert {c.last_transition_time for c in all_conditions(rec.state.translation).values()} == {T0}


# -- watch ------------------------------------------------------------------------------------


def write(path: Path, text: str, mtime_ns: int) -> None:
    """Content and an explicit mtime, so a change never hides inside the file system's
    timestamp granularity."""
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


class Script:
    """An injected sleep that runs the next step of the test's script each time the
    watcher waits (time passing on the script's clock, files changing meanwhile), and a
    stop that ends the watch once the script is done."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.sleeps: list[float] = []
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.steps[len(self.sleeps) - 1]()

    def clock(self) -> float:
        return self.now

    def stop(self) -> bool:
        return len(self.sleeps) >= len(self.steps)


def nothing() -> None:
    pass


def names(fp: watch.Fingerprint) -> list[str]:
    return [Path(entry[0]).name for entry in fp]


def test_fingerprint_lists_manifests_only(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", "b: 1\n", 1_000)
    write(tmp_path / "a.yml", "a: 1\n", 2_000)
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "c.yaml", "c: 1\n", 3_000)
    write(tmp_path / "notes.txt", "x", 4_000)
    write(tmp_path / ".hidden.yaml", "x: 1\n", 5_000)
    fp = watch.fingerprint(tmp_path)
    assert names(fp) == ["a.yml", "b.yaml", "c.yaml"]
    assert [(mtime, size) for _, mtime, size, *_ in fp] == [(2_000, 5), (1_000, 5), (3_000, 5)]


def test_fingerprint_of_a_missing_directory_is_empty(tmp_path: Path) -> None:
    assert watch.fingerprint(tmp_path / "nowhere") == ()


def test_without_a_settle_window_every_change_yields_at_once(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    write(a, "a: 1\n", 1_000)
    script = Script(
        nothing,
        lambda: write(b, "b: 1\n", 2_000),            # new file
        nothing,
        lambda: write(a, "a: 2\n", 3_000),            # content change, same size
        nothing,
        lambda: a.unlink(),                           # removal
        lambda: b.rename(c),                          # rename
        lambda: (tmp_path / "readme.txt").write_text("not a manifest"),
        nothing,
    )
    seen = list(watch.changes(tmp_path, interval=0.25, sleep=script.sleep, stop=script.stop, settle=0,
                              clock=script.clock))

    assert [names(fp) for fp in seen] == [["a.yaml"], ["a.yaml", "b.yaml"], ["a.yaml", "b.yaml"], ["b.yaml"], ["c.yaml"]]
    assert seen[1][0] == seen[0][0] and seen[2][0] != seen[1][0]  # the edit changed a's entry only
    assert script.sleeps == [0.25] * 9


def test_changes_with_nothing_changing_yields_once(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "a: 1\n", 1_000)
    script = Script(nothing, nothing, nothing, nothing)
    seen = list(watch.changes(tmp_path, sleep=script.sleep, stop=script.stop, clock=script.clock))
    assert len(seen) == 1 and names(seen[0]) == ["a.yaml"]
    assert len(script.sleeps) == 4


def test_changes_notices_a_directory_appearing(tmp_path: Path) -> None:
    root = tmp_path / "config"

    def create() -> None:
        root.mkdir()
        write(root / "a.yaml", "a: 1\n", 1_000)

    script = Script(nothing, create, nothing, nothing, nothing)
    seen = list(watch.changes(root, sleep=script.sleep, stop=script.stop, clock=script.clock))
    assert [names(fp) for fp in seen] == [[], ["a.yaml"]]


def test_a_burst_of_writes_is_reported_once_after_the_directory_is_quiet(tmp_path: Path) -> None:
    """An edit touching several files over several polls (a git checkout, a script
    writing one file per object) is one change, reported once the settle window has
    passed without another write."""
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    write(a, "a: 1\n", 1_000)
    script = Script(
        nothing,
        lambda: write(a, "a: 22\n", 2_000),  # the burst: one write per poll, 50 ms apart
        lambda: write(b, "b: 1\n", 3_000),
        lambda: write(c, "c: 1\n", 4_000),
        lambda: write(b, "b: 22\n", 5_000),
        nothing,                               # 50 ms quiet: not yet
        nothing,                               # 100 ms: not yet
        nothing,                               # 150 ms >= 120 ms: reported
        nothing, nothing, nothing,
    )
    seen = list(watch.changes(tmp_path, interval=0.05, settle=0.12, sleep=script.sleep, stop=script.stop,
                              clock=script.clock))

    assert [names(fp) for fp in seen] == [["a.yaml"], ["a.yaml", "b.yaml", "c.yaml"]]
    assert [(size) for _, _, size, *_ in seen[1]] == [6, 6, 5]  # the burst's last state
    assert script.sleeps == [0.05] * 11


def test_the_settle_window_restarts_with_every_write(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    write(a, "a: 1\n", 1_000)
    # Writes 100 ms apart, each within the 120 ms window of the one before.
    steps = []
    for i in range(5):
        steps += [lambda i=i: write(a, f"a: {i + 10}\n", 2_000 + i), nothing]
    script = Script(*steps, nothing, nothing, nothing)
    seen = []
    for fp in watch.changes(tmp_path, interval=0.05, settle=0.12, sleep=script.sleep, stop=script.stop,
                            clock=script.clock):
        seen.append((script.now, fp))
    assert len(seen) == 2
    # Reported 150 ms after the last write (t = 0.45 s), at the first poll past the window.
    assert seen[1][0] == pytest.approx(0.60)


def test_a_burst_that_restores_the_files_reports_nothing(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    write(a, "a: 1\n", 1_000)
    script = Script(lambda: write(a, "a: 2\n", 2_000), lambda: write(a, "a: 1\n", 1_000), nothing, nothing,
                    nothing, nothing)
    seen = list(watch.changes(tmp_path, interval=0.05, settle=0.12, sleep=script.sleep, stop=script.stop,
                              clock=script.clock))
    assert len(seen) == 1


def test_a_file_that_stops_being_recent_is_not_an_edit(tmp_path: Path) -> None:
    # Recently modified files carry a content digest, older ones only their stat: the
    # digest going away after two seconds must not look like an edit.
    a = tmp_path / "a.yaml"
    a.write_text("a: 1\n")
    mtime = a.stat().st_mtime_ns
    recent, settled = watch.fingerprint(tmp_path, now_ns=mtime + 1), watch.fingerprint(tmp_path, now_ns=mtime + 10**10)
    assert recent != settled and watch.same(recent, settled)
    a.write_text("a: 2\n")
    assert not watch.same(recent, watch.fingerprint(tmp_path, now_ns=mtime + 1))


def test_several_files_written_at_once_make_one_reconcile(tmp_path: Path) -> None:
    """The agent's loop as run_agent drives it: a new configuration written file by file
    is loaded and programmed once, with every file in it."""
    config = tmp_path / "config"
    config.mkdir()
    documents = example_documents()
    datapath = FakeDataPath()
    rec = reconciler(datapath, Clock())

    def write_all() -> None:
        for i, document in enumerate(documents):
            (config / f"{i:02d}.yaml").write_text(document)

    script = Script(nothing, write_all, nothing, nothing, nothing, nothing, nothing)
    for _ in watch.changes(config, interval=0.05, settle=0.12, sleep=script.sleep, stop=script.stop,
                           clock=script.clock):
        rec.reconcile(load_directory(config))
    assert rec.state.reconciles == 2  # the empty directory at start, then the whole edit once
    assert [len(d.services) for d in datapath.programmed] == [0, 2]
    assert rec.state.problems == ()


def test_changes_stops_before_sleeping_when_told_at_once(tmp_path: Path) -> None:
    slept: list[float] = []
    seen = list(watch.changes(tmp_path, sleep=slept.append, stop=lambda: True))
    assert seen == [()] and slept == []



# -- watch: inotify ------------------------------------------------------------------------------


def _stop_after(seconds: float):
    """A stop() for the inotify watcher that ends a test which would otherwise hang."""
    import time as _time

    deadline = _time.monotonic() + seconds
    return lambda: _time.monotonic() > deadline


def test_inotify_reports_an_edit_of_several_files_once(tmp_path: Path) -> None:
    """Woken by inotify: a burst of writes (no file event for the settle window only
    once it is over) is one change, with every file in it."""
    import threading
    import time as _time

    write(tmp_path / "a.yaml", "a: 1\n", 1_000)
    events = watch.DirectoryEvents(tmp_path)
    try:
        seen = watch.notified_changes(tmp_path, events, interval=0.01, settle=0.3, rescan=60,
                                      stop=_stop_after(30))
        assert names(next(seen)) == ["a.yaml"]

        def burst() -> None:
            for name in ("b", "c", "d"):
                (tmp_path / f"{name}.yaml").write_text(f"{name}: 1\n")
                _time.sleep(0.01)

        writer = threading.Thread(target=burst)
        writer.start()
        try:
            changed = next(seen)
        finally:
            writer.join()
        assert names(changed) == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
        # A same-size rewrite is an edit too (the digest of a recent file tells).
        (tmp_path / "a.yaml").write_text("a: 2\n")
        edited = next(seen)
        assert edited[0][4] != changed[0][4] and names(edited) == names(changed)
    finally:
        events.close()


def test_inotify_watches_new_subdirectories_and_replaced_files(tmp_path: Path) -> None:
    events = watch.DirectoryEvents(tmp_path)
    try:
        seen = watch.notified_changes(tmp_path, events, interval=0.01, settle=0.02, rescan=60,
                                      stop=_stop_after(30))
        assert next(seen) == ()
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "a.yaml").write_text("a: 1\n")
        assert names(next(seen)) == ["a.yaml"]
        (tmp_path / "sub" / "b.yaml").write_text("b: 1\n")  # inside the new directory
        assert names(next(seen)) == ["a.yaml", "b.yaml"]
        tmp = tmp_path / ".c.yaml.tmp"  # as editors and ConfigMap volumes replace files
        tmp.write_text("c: 1\n")
        tmp.rename(tmp_path / "sub" / "a.yaml")
        fp = next(seen)
        assert names(fp) == ["a.yaml", "b.yaml"] and fp[0][2] == len("c: 1\n")
    finally:
        events.close()


def test_inotify_hands_over_to_polling_when_the_directory_goes(tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    write(root / "a.yaml", "a: 1\n", 1_000)
    events = watch.DirectoryEvents(root)
    try:
        seen = watch.notified_changes(root, events, interval=0.01, settle=0.02, rescan=60, stop=_stop_after(30))
        assert names(next(seen)) == ["a.yaml"]
        (root / "a.yaml").unlink()
        root.rmdir()
        assert next(seen) == ()  # seen gone, by the watch or the poll that follows
        root.mkdir()
        write(root / "b.yaml", "b: 1\n", 2_000)
        assert names(next(seen)) == ["b.yaml"]  # polling now
    finally:
        events.close()


def test_idle_work_can_tell_that_an_edit_arrived_under_inotify(tmp_path: Path) -> None:
    """idle() gets a cheap check that an edit waits (an event queued on the inotify
    descriptor, left there for the watcher), so that a long read-back can give way."""
    write(tmp_path / "a.yaml", "a: 1\n", 1_000)
    checks: list[bool] = []

    def idle(edit_waiting) -> None:
        if checks:
            return
        checks.append(edit_waiting())
        write(tmp_path / "b.yaml", "b: 1\n", 2_000)  # the edit arrives during the idle work
        checks.append(edit_waiting())

    events = watch.DirectoryEvents(tmp_path)
    try:
        seen = watch.notified_changes(tmp_path, events, interval=0.01, settle=0.02, rescan=0,
                                      stop=_stop_after(30), idle=idle)
        assert names(next(seen)) == ["a.yaml"]
        assert names(next(seen)) == ["a.yaml", "b.yaml"], "the event that idle() saw was lost"
    finally:
        events.close()
    assert checks == [False, True]


def test_idle_work_can_tell_that_an_edit_arrived_while_polling(tmp_path: Path) -> None:
    """Polling, the check is a fingerprint, at most once per poll interval."""
    write(tmp_path / "a.yaml", "a: 1\n", 1_000)
    checks: list[bool] = []
    script = Script(nothing, nothing, nothing, nothing)

    def idle(edit_waiting) -> None:
        if checks:
            return
        checks.append(edit_waiting())
        write(tmp_path / "b.yaml", "b: 1\n", 2_000)
        checks.append(edit_waiting())  # no poll's worth of time has passed: not looked yet
        script.now += 0.05
        checks.append(edit_waiting())

    seen = list(watch._changes_from(tmp_path, watch.fingerprint(tmp_path), 0.05, script.sleep, script.stop,
                                    0, script.clock, idle))
    assert checks == [False, False, True]
    assert [names(fp) for fp in seen] == [["a.yaml", "b.yaml"]]


def test_watch_directory_polls_a_directory_that_does_not_exist_yet(tmp_path: Path) -> None:
    root = tmp_path / "config"

    def create() -> None:
        root.mkdir()
        write(root / "a.yaml", "a: 1\n", 1_000)

    script = Script(nothing, create, nothing, nothing, nothing)
    seen = list(watch.watch_directory(root, sleep=script.sleep, stop=script.stop, clock=script.clock))
    assert [names(fp) for fp in seen] == [[], ["a.yaml"]]


# -- logs --------------------------------------------------------------------------------------


def test_json_formatter_renders_one_record() -> None:
    record = logging.LogRecord("ctl.agent.reconciler", logging.INFO, __file__, 1, "reconciled %d writes", (4,), None)
    record.created = T0.timestamp() + 0.25
    record.event, record.writes, record.path = "reconciled", 4, Path("/etc/gw")
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry == {"time": "2025-01-01T00:00:00.250+00:00", "level": "info", "logger": "ctl.agent.reconciler",
                     "msg": "reconciled 4 writes", "event": "reconciled", "writes": 4, "path": "/etc/gw"}


@pytest.fixture
def json_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test_agent.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_json_logs_are_one_object_per_line(json_logger: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_logger
    logger.info("reconciled", extra={"event": "reconciled", "writes": 3, "seconds": 0.0123})
    logger.warning("forwarding is off\nenabling", extra={"event": "sysctl"})
    try:
        raise ValueError("bad\ninput")
    except ValueError:
        logger.exception("rejected", extra={"event": "rejected"})

    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "level", "logger", "msg", "event"} <= set(entry)
        assert entry["logger"] == "test_agent.json"
        assert datetime.fromisoformat(entry["time"]).tzinfo is not None
    assert [e["level"] for e in entries] == ["info", "warning", "error"]
    assert (entries[0]["writes"], entries[0]["seconds"]) == (3, 0.0123)
    assert entries[1]["msg"] == "forwarding is off\nenabling"
    assert "ValueError: bad\ninput" in entries[2]["exception"]
    assert not {"args", "levelno", "pathname", "exc_info"} & set(entries[0])  # LogRecord internals stay out


def test_configure_installs_one_json_handler_on_the_root_logger() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("debug")
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, logs.JsonFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


# -- server -------------------------------------------------------------------------------------


def fake_state(**kwargs) -> AgentState:
    condition = Condition("Accepted", "True", "Accepted", "GatewayClass is accepted", 1, T0)
    translation = Translation(DesiredState(), (
        ObjectStatus("GatewayClass", "", "xdp-gateway", "gateway.networking.k8s.io/v1", conditions=(condition,)),
    ))
    return AgentState(translation=translation, **kwargs)


@pytest.fixture(scope="module")
def running_server() -> Iterator[tuple[AgentServer, dict]]:
    # One server for the module: stopping one waits out serve_forever's 0.5 s poll.
    registry = CollectorRegistry()
    things = Counter("test_things", "Things counted by the test", registry=registry)
    things.inc(3)
    holder: dict = {}
    srv = AgentServer("127.0.0.1", 0, registry, lambda: holder["state"])
    srv.start()
    try:
        yield srv, holder
    finally:
        srv.stop()


@pytest.fixture
def server(running_server: tuple[AgentServer, dict]) -> tuple[AgentServer, dict]:
    """The running server, serving a fresh fake state (not ready yet)."""
    running_server[1]["state"] = fake_state()
    return running_server


def fetch(srv: AgentServer, path: str) -> tuple[int, str, bytes]:
    url = urlsplit(srv.address)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def test_server_address_is_the_bound_port(server) -> None:
    srv, _ = server
    assert srv.address.startswith("http://127.0.0.1:") and not srv.address.endswith(":0")


def test_healthz_is_always_ok(server) -> None:
    srv, _ = server
    assert fetch(srv, "/healthz") == (200, "text/plain; charset=utf-8", b"ok\n")
    assert fetch(srv, "/healthz?verbose=1")[0] == 200


def test_readyz_is_503_until_the_first_good_reconcile(server) -> None:
    srv, holder = server
    assert fetch(srv, "/readyz") == (503, "text/plain; charset=utf-8", b"not programmed yet\n")
    holder["state"] = fake_state(ready=True)
    assert fetch(srv, "/readyz") == (200, "text/plain; charset=utf-8", b"ready\n")


def test_metrics_serves_the_registry_in_prometheus_text(server) -> None:
    srv, _ = server
    code, ctype, body = fetch(srv, "/metrics")
    assert (code, ctype) == (200, CONTENT_TYPE_LATEST)
    text = body.decode()
    assert any(line.startswith("# TYPE test_things") and line.endswith(" counter") for line in text.splitlines())
    assert "test_things_total 3.0" in text.splitlines()


def test_objects_api_returns_each_status_as_kubernetes_json(server) -> None:
    srv, _ = server
    code, ctype, body = fetch(srv, "/api/v1/objects")
    assert (code, ctype) == (200, "application/json")
    assert json.loads(body) == [{
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "xdp-gateway"},
        "status": {"conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 1,
                                   "lastTransitionTime": "2025-01-01T00:00:00Z", "reason": "Accepted",
                                   "message": "GatewayClass is accepted"}]},
    }]


def test_objects_api_is_empty_before_any_translation(server) -> None:
    srv, holder = server
    holder["state"] = AgentState()
    assert json.loads(fetch(srv, "/api/v1/objects")[2]) == []


def test_problems_api_reports_problems_and_counters(server) -> None:
    srv, holder = server
    holder["state"] = fake_state(problems=("manifests.yaml: TCPRoute default/heavy: weight too big",),
                                 reconciles=7, errors=2)
    code, ctype, body = fetch(srv, "/api/v1/problems")
    assert (code, ctype) == (200, "application/json")
    assert json.loads(body) == {"problems": ["manifests.yaml: TCPRoute default/heavy: weight too big"],
                                "reconciles": 7, "errors": 2, "ignored": []}


@pytest.mark.parametrize("path", ["/", "/api/v1/object", "/metrics/extra", "/readyz/"])
def test_unknown_paths_are_404(server, path: str) -> None:
    srv, _ = server
    assert fetch(srv, path)[0] == 404


def test_server_stops_listening_when_stopped() -> None:
    srv = AgentServer("127.0.0.1", 0, CollectorRegistry(), AgentState)
    srv.start()
    assert fetch(srv, "/healthz")[0] == 200
    srv.stop()
    with pytest.raises(ConnectionRefusedError):
        fetch(srv, "/healthz")


# -- metrics ------------------------------------------------------------------------------------


def test_agent_metrics_count_reconciles_errors_and_durations() -> None:
    registry = CollectorRegistry()
    metrics = AgentMetrics(registry)
    metrics.observe(ReconcileOutcome(True, (), 12, 0.02))
    metrics.observe(ReconcileOutcome(False, ("bad input",), 0, 3.0))
    metrics.observe(ReconcileOutcome(True, (), 0, 0.004))

    value = registry.get_sample_value
    assert value("xdpgw_reconciles_total") == 3
    assert value("xdpgw_reconcile_errors_total") == 1
    assert value("xdpgw_reconcile_duration_seconds_count") == 3
    assert value("xdpgw_reconcile_duration_seconds_sum") == pytest.approx(3.024)
    assert value("xdpgw_reconcile_duration_seconds_bucket", {"le": "0.005"}) == 1
    assert value("xdpgw_reconcile_duration_seconds_bucket", {"le": "0.025"}) == 2
    assert value("xdpgw_reconcile_duration_seconds_bucket", {"le": "2.5"}) == 2
    assert value("xdpgw_reconcile_duration_seconds_bucket", {"le": "5.0"}) == 3


def test_agent_metrics_start_at_zero() -> None:
    registry = CollectorRegistry()
    AgentMetrics(registry)
    assert registry.get_sample_value("xdpgw_reconciles_total") == 0
    assert registry.get_sample_value("xdpgw_reconcile_errors_total") == 0


def test_dataplane_collector_yields_nothing_while_no_maps_are_pinned(tmp_path: Path) -> None:
    collector = DataplaneCollector(tmp_path / "nowhere", dict)
    assert list(collector.collect()) == []


def test_fingerprint_sees_a_same_size_rewrite_within_one_timestamp_tick(tmp_path):
    from ctl.agent.watch import fingerprint
    import os

    manifest = tmp_path / "route.yaml"
    manifest.write_text("weight: 1\n")
    stat = manifest.stat()
    before = fingerprint(tmp_path, now_ns=stat.st_mtime_ns + 1)
    manifest.write_text("weight: 2\n")  # same size
    os.utime(manifest, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same timestamp tick
    after = fingerprint(tmp_path, now_ns=stat.st_mtime_ns + 1)
    assert before != after
    old = fingerprint(tmp_path, now_ns=stat.st_mtime_ns + 10**10)  # long settled: stat only
    assert old[0][4] == ""


def test_a_second_agent_on_the_same_run_directory_refuses_to_start(tmp_path: Path) -> None:
    """The run directory names the agent that runs (for `gwctl down`, which refuses to
    pull the floor from under it); a second agent with the same pin directory refuses too."""
    import subprocess
    import sys
    import threading
    import time

    from ctl.agent import down
    from ctl.agent.run import AgentError, AgentOptions, run_agent
    from l7sidecar.envoy import RunPaths

    paths = RunPaths(tmp_path / "run")
    stale = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    paths.create()
    paths.agent_pid_file.write_text(stale.stdout)
    assert down.running_agent(paths) is None, "a pid file of a process that ended names no agent"
    # Something that looks like `gwctl run` (the word is in its argv), alive:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "run"])
    try:
        paths.agent_pid_file.write_text(f"{other.pid}\n")
        # /proc/PID/cmdline can read empty for a moment after exec: wait for it.
        deadline = time.monotonic() + 10
        while down.running_agent(paths) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert down.running_agent(paths) == other.pid
        options = AgentOptions(config_dir=tmp_path, interfaces=("lo",), run_dir=paths.run_dir,
                               pin_dir=tmp_path / "pins")
        with pytest.raises(AgentError, match=f"another agent \\(pid {other.pid}\\) runs"):
            run_agent(options, threading.Event())
        with pytest.raises(down.AgentRunning, match="stop it first"):
            down.take_down(tmp_path / "pins", paths)
    finally:
        other.kill()
        other.wait()
    assert down.running_agent(paths) is None


def test_read_backs_take_at_most_a_small_share_of_an_idle_agents_time() -> None:
    """A read-back costs CPU (a second at 10,000 routes): at scale they come less often
    than every REPAIR_INTERVAL."""
    import time

    from ctl.agent.run import REPAIR_INTERVAL
    from ctl.dataplane.dataplane import READ_BACK_SHARE, Dataplane

    dataplane = Dataplane(spec=None, programs=None)  # type: ignore[arg-type] - only the timing is used
    assert dataplane.repair_due(REPAIR_INTERVAL), "never read back: due"
    dataplane.read_back_at, dataplane.read_back_seconds = time.monotonic() - REPAIR_INTERVAL - 1, 0.02
    assert dataplane.repair_due(REPAIR_INTERVAL), "a cheap read-back: every interval"
    dataplane.read_back_seconds = 1.0
    assert not dataplane.repair_due(REPAIR_INTERVAL)
    dataplane.read_back_at = time.monotonic() - 1.0 / READ_BACK_SHARE - 1
    assert dataplane.repair_due(REPAIR_INTERVAL)
