"""The structure docs/design.md's Architecture section promises: imports point one way, one loader for
the native modules, a light ``import fastdqn``, and a checkout that imports (or says why not)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastdqn"

# Layers, lowest first. A unit may import its own modules and units of lower layers; units of one
# layer never import each other (env, replay and learn are independent stages), except on top.
LAYERS = [
    ["fastdqn._native", "fastdqn.atomic", "fastdqn.devices", "fastdqn.errors"],
    ["fastdqn.frames"],
    ["fastdqn.env", "fastdqn.replay", "fastdqn.learn"],
    ["fastdqn.run"],
    ["fastdqn", "fastdqn.__main__", "fastdqn.cli", "fastdqn.evaluate", "fastdqn.info", "fastdqn.play"],
    ["fastdqn.bench"],
]
TOP = len(LAYERS) - 2
# `fastdqn bench` is a subcommand: the CLI hands it over. No other production module imports bench.
ALLOWED = {("fastdqn.cli", "fastdqn.bench")}
NATIVE = {"fastdqn._core", "fastdqn._cuda"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit_of(name: str) -> str:
    units = [u for layer in LAYERS for u in layer]
    return max((u for u in units if name == u or name.startswith(u + ".")), key=len)


def layer_of(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def imports_of(path: Path) -> set[str]:
    """Every fastdqn module a file imports, at module level or inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:  # `from fastdqn import _native` imports the module fastdqn._native
                sub = f"{base}.{a.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (ROOT / Path(*sub.split(".")) / "__init__.py").exists() or sub in NATIVE
                found.add(sub if is_module else base)
    return {m for m in found if m == "fastdqn" or m.startswith("fastdqn.")}


def production_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_layers_cover_every_module():
    for path in production_files():
        unit_of(module_name(path))  # raises (max of nothing) for a module no layer names


def test_imports_point_one_way():
    wrong = []
    for path in production_files():
        here = module_name(path)
        mine = unit_of(here)
        for target in sorted(imports_of(path)):
            if target in NATIVE:
                if here != "fastdqn._native":
                    wrong.append(f"{here} imports {target} (only fastdqn._native loads native modules)")
                continue
            theirs = unit_of(target)
            if theirs == mine or (here, theirs) in ALLOWED:
                continue
            a, b = layer_of(mine), layer_of(theirs)
            if b > a or (b == a and a != TOP):
                wrong.append(f"{here} (layer {a}) imports {target} (layer {b})")
    assert not wrong, "imports against the direction:\n" + "\n".join(wrong)


def test_the_direction_test_catches_a_backwards_import(tmp_path):
    """The walker sees lazy imports and relative ones (a guard against a test that cannot fail)."""
    fake = PACKAGE / "replay" / "_probe_for_test.py"
    fake.write_text("def f():\n    from ..learn import learner\n    from fastdqn.run import trainer\n")
    try:
        assert imports_of(fake) == {"fastdqn.learn.learner", "fastdqn.run.trainer"}
        with pytest.raises(AssertionError, match="replay._probe_for_test .*imports fastdqn.run.trainer"):
            test_imports_point_one_way()
    finally:
        fake.unlink()


def _run(code: str, cwd: Path, python: str = sys.executable, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")} | env
    return subprocess.run([python, "-c", code], cwd=cwd, env=environ, capture_output=True, text=True, timeout=300)


def test_import_fastdqn_is_light_and_replay_pulls_no_opencv_or_numba(tmp_path):
    code = ("import sys, fastdqn; assert 'torch' not in sys.modules, 'import fastdqn loaded torch'\n"
            "from fastdqn import ReplayBuffer; ReplayBuffer(10)\n"
            "heavy = sorted(m for m in ('cv2', 'numba', 'gymnasium', 'ale_py') if m in sys.modules)\n"
            "assert not heavy, f'the replay buffer pulled in {heavy}'")
    r = _run(code, tmp_path)
    assert r.returncode == 0, r.stderr


def test_only_the_native_loader_imports_core():
    for path in production_files():
        if module_name(path) != "fastdqn._native":
            assert not imports_of(path) & NATIVE, path


def _installed_in_editable_mode() -> bool:
    """Whether the fastdqn the tests import (conftest keeps the checkout off sys.path) is this
    checkout: an editable install, whose import hook gives the checkout its _core anywhere."""
    spec = importlib.util.find_spec("fastdqn")
    return spec is not None and spec.origin is not None and Path(spec.origin).resolve() == PACKAGE / "__init__.py"


@pytest.mark.skipif(any(PACKAGE.glob("_core*.so")) or any(PACKAGE.glob("_core*.pyd")),
                    reason="this checkout holds an in-place build of _core")
@pytest.mark.skipif(_installed_in_editable_mode(), reason="this checkout is installed in editable mode: "
                    "it imports with its _core (test_the_editable_install_imports_from_the_checkout_root)")
def test_the_source_checkout_says_where_it_imported_from_and_what_works():
    """Run from the checkout root, Python imports the bare sources, not the installed package."""
    r = _run("from fastdqn import ReplayBuffer; ReplayBuffer(10)", ROOT)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("fastdqn._native.NativeModuleMissing: fastdqn._core is not built"), last
    assert str(PACKAGE) in last and "outside the checkout" in last, last
    assert "pip install --no-build-isolation -e ." in last, last


def _venv_that_sees_these_packages(env_dir: Path) -> str:
    """A fresh venv of this interpreter's Python (not a python found on PATH) that imports what
    this one imports: its base's packages (system_site_packages) and, through a .pth file, this
    environment's own site-packages, where a venv's torch, pip and build tools are. Its python."""
    pip_here = importlib.util.find_spec("pip") is not None
    venv.create(env_dir, system_site_packages=True, with_pip=not pip_here)  # this pip: a bundled one may be old
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    sites = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    (Path(purelib) / "_parent_site_packages.pth").write_text("".join(f"{p}\n" for p in sites))
    return str(python)


@pytest.mark.slow
def test_the_editable_install_imports_from_the_checkout_root(tmp_path):
    """docs/design.md's editable-install command (Contributing), in a fresh venv (the system's
    packages visible, as --no-build-isolation needs): from the checkout root the sources import
    with their _core."""
    python = _venv_that_sees_these_packages(tmp_path / "venv")
    build = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "-e", str(ROOT),
         "--config-settings", f"build-dir={tmp_path / 'build'}",
         "--config-settings", "cmake.define.FASTDQN_CUDA=OFF"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    code = ("import fastdqn, fastdqn._core; from fastdqn import ReplayBuffer; b = ReplayBuffer(10); "
            "print(fastdqn.__file__)")
    r = _run(code, ROOT, python)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(PACKAGE / "__init__.py")


# Writes of another object's private attributes, each with its reason. Anything else is a defect:
# a stage changes another's state only through its public interface (the Trainer's RunState).
PRIVATE_WRITES = {
    ("fastdqn/env/snapshot.py", "w._elapsed_steps"): "gymnasium's TimeLimit has no public setter",
}


def private_writes() -> set[tuple[str, str]]:
    found = set()
    for path in production_files():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in (e for t in targets for e in (t.elts if isinstance(t, ast.Tuple) else [t])):
                chain, v = [], t  # the attributes from the written one down to the root name
                while isinstance(v, (ast.Attribute, ast.Subscript)):
                    if isinstance(v, ast.Attribute):
                        chain.append(v.attr)
                    v = v.value
                private = [a for a in chain if a.startswith("_") and not a.startswith("__")]
                own = isinstance(v, ast.Name) and v.id in ("self", "cls") and private == chain[-1:]
                if private and not own:
                    found.add((str(path.relative_to(ROOT)), ast.unparse(t)))
    return found


def test_no_module_writes_another_objects_private_state():
    assert private_writes() == set(PRIVATE_WRITES)
