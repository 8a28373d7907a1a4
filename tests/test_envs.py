"""envs/*.yaml (per-rule conda environments) agree with pyproject.toml.

conda itself cannot run here (its channels are unreachable), so this checks
the files: every pinned package that pyproject also requires is pinned at
pyproject's floor, every env can run a rule script (python, snakemake), and
every rule names an env that exists.
"""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import REPO

# conda-forge name -> PyPI name where they differ
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "open-clip-torch": "open_clip_torch",
    "snakemake-minimal": "snakemake",
}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_floors() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = {}
    for dep in deps:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][^,;\s]*)", dep)
        assert m, f"pyproject dependency {dep!r} has no >= floor"
        floors[_canon(m[1])] = m[2]
    return floors


def env_pins(path) -> dict[str, str]:
    spec = yaml.safe_load(path.read_text())
    pins = {}
    for dep in spec["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*=?=\s*([0-9][^\s]*)$", item)
            if m:
                pins[_canon(CONDA_TO_PYPI.get(m[1], m[1]))] = m[2]
    return pins


def test_every_env_pins_pyproject_floors():
    floors = pyproject_floors()
    envs = sorted((REPO / "envs").glob("*.yaml"))
    assert envs, "no envs/*.yaml"
    covered = set()
    for env in envs:
        pins = env_pins(env)
        assert "python" in pins and "snakemake" in pins, f"{env.name}: needs python and snakemake"
        for name, version in pins.items():
            if name in floors:
                assert version == floors[name], (
                    f"{env.name}: {name}=={version} but pyproject requires >={floors[name]}"
                )
                covered.add(name)
    missing = set(floors) - covered
    assert not missing, f"pyproject dependencies in no env: {sorted(missing)}"


def test_every_rule_has_an_existing_conda_env():
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, flags=re.M):
            m = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", body)
            assert m, f"{smk.name}: rule {rule} has no conda: directive"
            assert (smk.parent / m[1]).resolve().is_file(), (
                f"{smk.name}: rule {rule}: {m[1]} missing"
            )
