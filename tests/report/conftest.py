"""A finished run folder whose metrics hold hostile strings in every place data can reach."""

import pytest

from .report_hostile import HostileRun, make_hostile_run


@pytest.fixture
def hostile_run(tmp_path) -> HostileRun:
    return make_hostile_run(tmp_path / "run")
