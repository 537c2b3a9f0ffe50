"""Packaging and the one import namespace: the stage folders (training/, gallery/, export/, evaluation/) install as
subpackages of `faceid`, the package list in pyproject.toml covers every package folder, the wheel holds `faceid`
alone, and a user's own `training`, `gallery`, `evaluation` or `export` modules never shadow faceid's."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("faceid", "training", "gallery", "export", "evaluation")  # the folders that install as `faceid...`
USER_MODULES = ("training/__init__.py", "gallery/__init__.py", "evaluation.py", "export.py")


def _setuptools() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]


def _packages_in(tree: Path, package_dir: dict[str, str]) -> dict[str, Path]:
    """{package name: folder} for every folder holding an `__init__.py` under the stage folders of `tree`, named
    through the package-dir table (`gallery/index` is `faceid.gallery.index`)."""
    name_of = {folder.strip("/"): name for name, folder in package_dir.items()}
    unmapped = [stage for stage in STAGES if stage not in name_of]
    assert not unmapped, f"pyproject.toml's package-dir table does not map {unmapped}"
    found = {}
    for stage in STAGES:
        for init in sorted((tree / stage).rglob("__init__.py")):
            parts = init.parent.relative_to(tree / stage).parts
            found[".".join((name_of[stage], *parts))] = init.parent
    return found


def test_the_package_list_names_every_package_folder():
    setuptools = _setuptools()
    listed, found = setuptools["packages"], _packages_in(ROOT, setuptools["package-dir"])
    assert len(listed) == len(set(listed)), f"packages listed twice in pyproject.toml: {listed}"
    missing, extra = sorted(set(found) - set(listed)), sorted(set(listed) - set(found))
    assert not missing and not extra, (
        f"pyproject.toml [tool.setuptools] packages is out of step with the tree: missing {missing} "
        f"(folders {[str(found[m].relative_to(ROOT)) for m in missing]}), listed without a package folder {extra}")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the source tree it was built from): a copy of what the build reads, so that the build neither
    writes build/ or *.egg-info into the checkout nor packs stale files from an earlier build/."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for stage in STAGES:
        shutil.copytree(ROOT / stage, source / stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    # offline with this venv's setuptools; a venv without one (Python 3.12+ makes none) has pip fetch it
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *offline, "-w", str(out), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert result.returncode == 0, f"`{' '.join(command)}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    wheels = list(out.glob("faceid-*.whl"))
    assert len(wheels) == 1, f"expected one faceid wheel in {out}, found {[p.name for p in out.iterdir()]}"
    return wheels[0], source


@pytest.mark.slow
def test_the_wheel_installs_faceid_alone_with_every_stage_inside_it(built):
    wheel, source = built
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
        assert len(dist_info) == 1, dist_info
        dist_info = dist_info.pop()
        assert archive.read(f"{dist_info}/top_level.txt").decode().split() == ["faceid"]
        assert re.search(r"^faceid\s*=\s*faceid\.cli:main$", archive.read(f"{dist_info}/entry_points.txt").decode(),
                         re.MULTILINE)
    assert {name.split("/")[0] for name in names} == {"faceid", dist_info}  # no top-level training/, gallery/...
    packages = _packages_in(source, _setuptools()["package-dir"])
    expected = {"/".join([*package.split("."), path.name]) for package, folder in packages.items()
                for path in folder.glob("*.py")}
    modules = {name for name in names if name.endswith(".py")}
    for stage in ("training", "gallery", "export", "evaluation"):
        assert f"faceid/{stage}/__init__.py" in modules, f"the wheel has no faceid/{stage}/"
    assert modules == expected, (f"the wheel lacks {sorted(expected - modules)[:20]}; "
                                 f"it holds modules the tree lacks {sorted(modules - expected)[:20]}")


# ----- a user's own modules named like the stages never shadow faceid's --------------------------------------
USER_MODULE = """import pathlib, sys
pathlib.Path({marker!r}).touch()
print("USER MODULE {name} was imported", file=sys.stderr, flush=True)
raise RuntimeError("USER MODULE {name}: the user's own module was imported instead of faceid's")
"""


@pytest.fixture
def users_folder(tmp_path) -> Path:
    """A working folder holding the user's own `training/`, `gallery/` packages and `evaluation.py`, `export.py`
    modules; importing one leaves a file `imported-NAME` beside them, prints USER MODULE and raises."""
    for module in USER_MODULES:
        path = tmp_path / module
        path.parent.mkdir(exist_ok=True)
        name = module.split("/")[0].removesuffix(".py")
        path.write_text(USER_MODULE.format(marker=str(tmp_path / f"imported-{name}"), name=name))
    return tmp_path


def _run_in(folder: Path, arguments: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`arguments` run with `folder` as the working directory and first on PYTHONPATH; fails the test if it ran
    over `timeout` seconds, or if any of the user's modules was imported (whatever the exit status)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")])))
    env.pop("PYTHONSAFEPATH", None)  # the working directory stays first on sys.path for `python -m`
    try:
        result = subprocess.run(arguments, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"`{' '.join(map(str, arguments))}` ran over {timeout:g} s; its stderr:\n{expired.stderr}")
    output = result.stdout + result.stderr
    imported = sorted(path.name.removeprefix("imported-") for path in folder.glob("imported-*"))
    assert "USER MODULE" not in output and not imported, (
        f"`{' '.join(map(str, arguments))}` imported the user's own {imported or 'module'} instead of faceid's:\n"
        f"{output[-4000:]}")
    return result


def _console_script() -> str:
    script = Path(sys.executable).with_name("faceid")
    found = str(script) if script.is_file() else shutil.which("faceid")
    assert found, f"the `faceid` console script is installed neither beside {sys.executable} nor on PATH"
    return found


def test_faceid_help_runs_in_a_folder_of_the_users_own_modules(users_folder):
    result = _run_in(users_folder, [_console_script(), "--help"], timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("usage: faceid"), result.stderr[-3000:]
    assert "train" in result.stdout and "gallery" in result.stdout


@pytest.mark.slow
def test_training_runs_in_a_folder_of_the_users_own_modules(users_folder):
    from tests.training.test_trainer import TINY

    cli = [sys.executable, "-m", "faceid.cli"]
    data, run = users_folder / "data", users_folder / "run"
    synth = _run_in(users_folder, [*cli, "synth", "--identities", "12", "--images-per-identity", "4", "--out",
                                   str(data)], timeout=300)
    assert synth.returncode == 0, synth.stderr[-3000:]
    overrides = [f"data.root={data / 'aligned'}", f"training.run_dir={run}", *TINY, "training.epochs=1",
                 "training.validate_every_epochs=null", "training.augmentation=none"]
    train = _run_in(users_folder, [*cli, "train", *(a for o in overrides for a in ("--set", o))], timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert (run / "model.pt").is_file() and (run / "checkpoints" / "last.pt").is_file(), sorted(
        str(p.relative_to(run)) for p in run.rglob("*"))


def _readme_python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block in README.md."""
    text = (ROOT / "README.md").read_text()
    return [(text.count("\n", 0, match.start()) + 1, match.group(1))
            for match in re.finditer(r"^```python[ \t]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


README_BLOCKS = _readme_python_blocks()


@pytest.mark.slow
@pytest.mark.parametrize("line, code", README_BLOCKS, ids=[f"README.md:{line}" for line, _ in README_BLOCKS])
def test_the_readmes_python_examples_run_as_written_in_a_folder_of_the_users_own_modules(users_folder, line, code):
    script = users_folder / f"readme_example_line{line}.py"
    script.write_text(code)
    result = _run_in(users_folder, [sys.executable, script.name], timeout=600)
    first = next((s for s in code.splitlines() if s.strip()), "")
    assert result.returncode == 0, (f"README.md's python block at line {line} ({first!r}) failed with exit status "
                                    f"{result.returncode}; its stderr:\n{result.stderr[-4000:]}")


def test_the_readme_has_python_examples_to_run():
    assert README_BLOCKS, "README.md has no ```python block: the example test would run nothing"
