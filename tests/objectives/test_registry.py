"""Every registered objective is an Objective: the one interface the loop trains."""

import pytest

from masklab.objectives import OBJECTIVES, Objective


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_registered_objective_is_an_objective(name):
    entry = OBJECTIVES[name]
    assert issubclass(entry.fn, Objective) and entry.summary and "\n" not in entry.summary
