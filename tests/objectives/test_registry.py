"""Every registered objective is an Objective: the one interface the loop trains."""

import pytest

from masklab.objectives import OBJECTIVES, Objective


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_registered_objective_is_an_objective(name):
    entry = OBJECTIVES[name]
    assert issubclass(entry.fn, Objective) and entry.summary and "\n" not in entry.summary


def test_every_objective_class_is_registered():
    """One shape per concept: every concrete Objective in masklab.objectives is in the registry (so `masklab list
    objective` shows it and the test above covers it)."""
    import importlib
    import inspect
    import pkgutil

    import masklab.objectives as pkg

    registered = {e.fn for e in (OBJECTIVES[n] for n in OBJECTIVES.names())}
    missing = []
    for mod in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"masklab.objectives.{mod.name}")
        for name, cls in inspect.getmembers(module, inspect.isclass):
            own = cls.__module__ == module.__name__ and not name.startswith("_")
            if own and issubclass(cls, Objective) and not inspect.isabstract(cls) and cls not in registered:
                missing.append(f"{module.__name__}.{name}")
    assert not missing, missing
