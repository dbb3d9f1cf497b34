"""Package discovery only; all metadata lives in pyproject.toml.

builders/, filters/ and trainers/ ship as ``meddata.builders``, ``meddata.filters`` and
``meddata.trainers``. Every folder below them (code or data) is found here, so a new
subfolder can never go missing from a wheel, and none is left out of ``packages`` (which
would make setuptools warn at every install).
"""

from setuptools import find_namespace_packages, setup

PACKAGE_DIRS = {"meddata": "meddata", "meddata.builders": "builders", "meddata.filters": "filters",
                "meddata.trainers": "trainers"}


def packages() -> list[str]:
    found = set(PACKAGE_DIRS)
    for name, folder in PACKAGE_DIRS.items():
        found.update(f"{name}.{sub}" for sub in find_namespace_packages(folder, exclude=["*__pycache__*"]))
    return sorted(found)


if __name__ == "__main__":  # setuptools' build backend runs this file as a script
    setup(packages=packages(), package_dir=PACKAGE_DIRS)
