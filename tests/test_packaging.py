"""The two install routes agree, and nothing in the repository points into this one machine."""
from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# pip distribution name -> conda-forge package name, where they differ.
PIP_TO_CONDA = {
    "redis": "redis-py",
    "pypng": "pypng",
    "nest-asyncio": "nest-asyncio",
    "jupyter-server-proxy": "jupyter-server-proxy",
}


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement ("Foo_Bar[x]>=1" -> "foo-bar")."""
    name = re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_dependencies() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return [_name(r) for r in tomllib.load(f)["project"]["dependencies"]]


def _environment() -> tuple[set[str], set[str]]:
    """(conda packages, pip packages) listed in environment.yml."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    conda, pip = set(), set()
    for entry in env["dependencies"]:
        if isinstance(entry, str):
            conda.add(_name(entry))
        elif isinstance(entry, dict) and "pip" in entry:
            pip.update(_name(p) for p in entry["pip"])
    return conda, pip


@pytest.mark.parametrize("dependency", _runtime_dependencies())
def test_every_runtime_dependency_is_in_environment_yml(dependency):
    conda, pip = _environment()
    conda_name = PIP_TO_CONDA.get(dependency, dependency)
    assert conda_name in conda or dependency in pip, (
        f"pyproject.toml needs {dependency!r} but environment.yml lists neither the conda-forge package "
        f"{conda_name!r} nor a pip entry {dependency!r}; add one (conda users and Binder install from it)")


def test_environment_yml_is_binder_ready():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert env.get("channels") and env["channels"][0] == "conda-forge"
    conda, _ = _environment()
    python = [d for d in env["dependencies"] if isinstance(d, str) and _name(d) == "python"]
    assert python and re.search(r"3\.1[1-9]", python[0]), f"environment.yml should pin Python 3.11+: {python}"
    assert {"redis-server", "nginx"} <= conda, "the real redis-server and nginx come from conda-forge"


def _repository_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell repository files from local ones")
    return [ROOT / p for p in listed if (ROOT / p).is_file()]


def _machine_paths() -> list[str]:
    """Absolute paths that exist only on this machine: where the checkout sits, and the home folder.

    (System paths such as /usr/sbin/nginx are the same on every Debian and are not flagged.)
    """
    needles = {str(ROOT).rstrip("/") + "/", str(Path.home()).rstrip("/") + "/"}
    if str(ROOT.parent) not in {ROOT.anchor, "/tmp", "/var/tmp", "/home"}:  # e.g. a work folder beside others
        needles.add(str(ROOT.parent).rstrip("/") + "/")
    return sorted(needles - {"/"})


def test_no_absolute_paths_of_this_machine():
    needles = _machine_paths()
    offenders = []
    for path in _repository_files():
        if path.suffix in {".png", ".jpg", ".gif", ".ico", ".pdf", ".whl", ".gz", ".zip"}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for needle in needles:
            if needle in text:
                line = next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)
                offenders.append(f"{path.relative_to(ROOT)}:{line} contains {needle!r}")
    assert not offenders, "paths of this machine in the repository:\n" + "\n".join(offenders)
