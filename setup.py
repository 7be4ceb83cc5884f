"""Maps the top-level folders onto the ``braid.*`` namespace (``braid`` itself is implicit).

The package list is derived from the folders so new subpackages can't be left out of wheels.
"""
import os

from setuptools import setup

ROOTS = {"server": "braid.server", "agents": "braid.agents", "tools": "braid.tools",
         "memory": "braid.memory", "clients": "braid.clients"}

packages, package_dir = [], {}
for folder, name in ROOTS.items():
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        if "__init__.py" in filenames:
            package = name + dirpath[len(folder):].replace(os.sep, ".")
            packages.append(package)
            package_dir[package] = dirpath

setup(packages=packages, package_dir=package_dir,
      package_data={package: ["*.md", "*.json", "*.jinja"] for package in packages})
