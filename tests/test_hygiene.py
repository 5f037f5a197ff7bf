"""Rules the test suite keeps about itself.

* Nothing is imported from a ``conftest.py``: pytest imports each conftest itself, so an import
  makes a second copy of the module (and of any fixture in it). Helpers live in plain modules
  (``tests/<domain>/helpers.py``, ``tests/factories.py``, ``tests/asgi.py``).
* A test module that starts processes, drives a browser or waits half a second or more marks
  those tests ``slow``, so ``./run test -m "not slow"`` stays the quick inner loop.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CONFTEST_IMPORT = re.compile(
    r"^\s*(from\s+tests(\.\w+)*\.conftest\s+import|import\s+tests(\.\w+)*\.conftest)", re.M
)
SLOW_SIGNS = re.compile(r"subprocess\.|create_subprocess_|playwright|sleep\((?:[1-9]|0\.[5-9])")


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if p.name != "conftest.py")


def test_nothing_imports_from_a_conftest() -> None:
    found = [str(p.relative_to(TESTS)) for p in _modules() if CONFTEST_IMPORT.search(p.read_text())]
    assert found == [], "move the helper into a plain module (tests/<domain>/helpers.py)"


def test_process_browser_and_waiting_tests_are_marked_slow() -> None:
    unmarked = [
        str(p.relative_to(TESTS))
        for p in _modules()
        if p.name.startswith("test_")
        and p != Path(__file__)
        and SLOW_SIGNS.search(p.read_text())
        and "pytest.mark.slow" not in p.read_text()
    ]
    assert unmarked == [], "mark these slow (pytestmark or @pytest.mark.slow)"
