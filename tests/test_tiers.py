"""The fast tier's own guard (``support.tiers``, ``pytest --fast``).

A test is sorted by what it uses, so the tests that land later are sorted too:
these build a small suite with pytester and check where each test goes, and
check this very run: no test that takes the emulator is left in the fast tier.
And the suite's layout that keeps it so: one fake clock, and no test module
importing another (shared parts live in ``conftest.py`` or ``support/``).
"""

from __future__ import annotations

import ast

import pytest
from support import tiers

pytest_plugins = ["pytester"]

SUITE = '''
import socketserver
import subprocess
import sys
import time

import pytest

from lwa_middleware.testing import LWAEmulator


def start_lwa():
    with LWAEmulator() as lwa:
        return lwa.base_url


class Child:
    def __init__(self):
        subprocess.run([sys.executable, "-c", "pass"], check=True)


@pytest.fixture
def child():
    return Child()


def test_takes_the_emulator(lwa_emulator):
    assert lwa_emulator.base_url


def test_starts_one_through_a_helper():
    assert start_lwa()


def test_takes_a_fixture_that_spawns(child):
    assert child


def test_waits_out_the_clock():
    time.sleep(1.5)


@pytest.mark.redis
def test_marked_by_hand():
    pass


def test_pure():
    assert 1 + 1 == 2


def test_hides_a_server_in_a_library_call():
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler):
        pass
'''

EXPECTED = {
    "test_takes_the_emulator": {"server"},
    "test_starts_one_through_a_helper": {"server"},
    "test_takes_a_fixture_that_spawns": {"server"},
    "test_waits_out_the_clock": {"wallclock"},
    "test_marked_by_hand": {"redis"},
    "test_pure": set(),
    # Not seen by reading (the server is the standard library's): the guard's.
    "test_hides_a_server_in_a_library_call": set(),
}


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """SUITE in a directory of its own, with only the plugins it needs: the
    package's (``lwa_emulator``) and the tiers', not every installed one."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


PLUGINS = ("-p", "lwa_middleware.testing.pytest_plugin", "-p", "support.tiers")


def test_each_test_is_sorted_by_what_it_uses(suite: pytest.Pytester) -> None:
    items, _ = suite.inline_genitems(*PLUGINS)
    found = {item.name: {m.name for m in item.iter_markers()} & set(tiers.TIERS) for item in items}
    assert found == EXPECTED


def test_fast_runs_only_the_fast_tier_and_the_guard_catches_what_reading_missed(
    suite: pytest.Pytester,
) -> None:
    result = suite.inline_run(*PLUGINS, "--fast")
    reports = result.getreports("pytest_runtest_logreport")
    passed = [r.nodeid.split("::")[-1] for r in reports if r.passed and r.when == "call"]
    failed = [r for r in reports if r.failed]
    assert passed == ["test_pure"]
    assert [r.nodeid.split("::")[-1] for r in failed] == ["test_hides_a_server_in_a_library_call"]
    assert "listens on a socket but is in the fast tier" in str(failed[0].longrepr)


def test_no_test_of_this_run_takes_the_emulator_unmarked(request: pytest.FixtureRequest) -> None:
    # Under --fast: none was selected; in the full run: each is marked server.
    emulated = [i for i in request.session.items if "lwa_emulator_server" in i.fixturenames]
    assert all(i.get_closest_marker("server") for i in emulated)
    if request.config.getoption("fast"):
        assert emulated == []
        assert all(tiers.is_fast(i) for i in request.session.items)


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(tiers.TESTS)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(tiers.TESTS.rglob("*.py"))
    ]


def test_no_test_module_imports_another() -> None:
    found = [
        (name, node.module)
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").rpartition(".")[2].startswith("test_")
    ]
    assert found == []


def test_one_fake_clock() -> None:
    clocks = [
        (name, node.name)
        for name, tree in _modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name.endswith(("Clock", "Monotonic"))
    ]
    assert clocks == [("support/clock.py", "FakeClock")]
