"""Collect the ``bench_*.py`` suites here (pytest's default only collects ``test_*.py``)."""

import pytest


def pytest_collect_file(file_path, parent):
    # a bench file named on the command line is collected by pytest itself (no duplicate)
    if (
        file_path.suffix == ".py"
        and file_path.name.startswith("bench_")
        and not parent.session.isinitpath(file_path)
    ):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
