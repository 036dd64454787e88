"""Packaging beyond pyproject.toml: the experiment files ship inside the package.

`experiments/` stays at the repository root (the README, the docs and the tests name
`experiments/NAME.py`), and a non-editable install carries it as `lth/experiments/` (with
`sweeps/`), where `lth.spec.experiments` looks when there is no repository around the package.
pyproject.toml cannot add a mapped folder to the packages it finds, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["lth", "lth.*"]), "lth.experiments", "lth.experiments.sweeps"],
    package_dir={"lth.experiments": "experiments", "lth.experiments.sweeps": "experiments/sweeps"},
)
