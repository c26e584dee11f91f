"""The asgitrace pytest plugin (``-p no:asgitrace`` disables it).

Fixtures and markers arrive with the testing issue; for now it only names itself in the
report header, so a run shows which asgitrace it used.
"""

from __future__ import annotations

import pytest

import asgitrace


def pytest_report_header(config: pytest.Config) -> str:
    return f"asgitrace: {asgitrace.__version__}"
