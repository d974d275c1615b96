"""Every package the product's code imports is declared in pyproject.toml, not merely installed as
somebody else's dependency: a release of that somebody could drop it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from tests.conftest import ROOT


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0] for requirement in project["dependencies"]}
    return {name.lower().replace("_", "-") for name in names}


def _imported_top_levels() -> set[str]:
    files = [*ROOT.joinpath("csms").rglob("*.py"), *ROOT.joinpath("actors").rglob("*.py"), ROOT / "wsgi.py"]
    found: set[str] = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"csms", "actors", "wsgi", "__future__"}


def test_every_imported_package_is_a_declared_dependency():
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        module: distributions.get(module)
        for module in _imported_top_levels()
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [module])} & _declared()
    }
    assert undeclared == {}
