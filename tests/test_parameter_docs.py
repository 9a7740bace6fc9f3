"""Every option of a public DataModule, task and model is explained by ``--data.help`` / ``--model.help``: jsonargparse
reads each class's ``Args:`` docstring section (and its base classes' for options passed on through ``**kwargs``)."""

import inspect

import docstring_parser
import pytest

import datamodules
import research.models
import research.tasks


def public_classes() -> list[type]:
    found = []
    for module in (datamodules, research.tasks, research.models):
        found += [getattr(module, name) for name in module.__all__ if inspect.isclass(getattr(module, name))]
    return found


def documented(cls: type) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in ("datamodules", "research"):
            names |= {p.arg_name.lstrip("*") for p in docstring_parser.parse(klass.__doc__ or "").params}
    return names


@pytest.mark.parametrize("cls", public_classes(), ids=lambda c: c.__name__)
def test_every_parameter_of_a_public_class_is_documented(cls: type) -> None:
    parameters = [
        name for klass in cls.__mro__ if klass.__module__.split(".")[0] in ("datamodules", "research")
        and "__init__" in vars(klass) for name, p in inspect.signature(klass.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]  # fmt: skip
    missing = sorted(set(parameters) - documented(cls))
    assert not missing, f"{cls.__name__}: no Args entry for {missing}"
