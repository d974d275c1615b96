"""Every package the product's code imports is declared in pyproject.toml, not merely installed as
somebody else's dependency: a release of that somebody could drop it. What a module imports when it
is loaded must be a runtime dependency; what a development tool imports inside its functions (the
screenshot script's Selenium) may be a development one."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from tests.conftest import ROOT

FILES = [*ROOT.joinpath("csms").rglob("*.py"), *ROOT.joinpath("actors").rglob("*.py"), ROOT / "wsgi.py"]


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _imported(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {node.module.split(".")[0]}
    return set()


def _third_party(modules: set[str]) -> set[str]:
    return modules - set(sys.stdlib_module_names) - {"csms", "actors", "wsgi", "__future__", "tests"}


def _imports() -> tuple[set[str], set[str]]:
    """(imported when a module loads, imported only inside functions)."""
    at_load: set[str] = set()
    everywhere: set[str] = set()
    for path in FILES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            everywhere |= _imported(node)
        for node in tree.body:  # module level, including `if TYPE_CHECKING:` and try blocks
            for inner in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else ():
                at_load |= _imported(inner)
    return _third_party(at_load), _third_party(everywhere) - _third_party(at_load)


def _undeclared(modules: set[str], declared: set[str]) -> dict[str, list[str]]:
    distributions = importlib.metadata.packages_distributions()
    return {
        module: distributions.get(module, [module])
        for module in modules
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [module])} & declared
    }


def test_every_imported_package_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _names(project["dependencies"])
    development = runtime | _names(project["optional-dependencies"]["dev"])
    at_load, in_functions = _imports()
    assert _undeclared(at_load, runtime) == {}
    assert _undeclared(in_functions, development) == {}
