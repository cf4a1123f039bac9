"""Packaging beyond what pyproject.toml can say: notebooks/ ships inside the wheel as `leadkit/notebooks`
(package data), `dashboards` ships as a second top-level package with its login page, and `leadkit_sandbox` (the local
Airtable- and Apify-compatible sandbox that `leadkit sandbox` and `leadkit demo` serve) as a third. Every `leadkit.*`
subpackage is found, so a new one needs no entry here."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["leadkit", "leadkit.*", "dashboards", "leadkit_sandbox"]), "leadkit.notebooks"],
    package_dir={"leadkit.notebooks": "notebooks"},
    package_data={"leadkit.notebooks": ["*.ipynb"], "dashboards": ["*.html"]},
)
