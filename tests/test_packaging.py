"""The wheel built from the repository holds only the ``braid`` namespace (no top-level
``server``/``tools``/``memory`` modules) and every source package of each folder."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"server": "braid/server", "agents": "braid/agents", "tools": "braid/tools", "memory": "braid/memory",
           "clients": "braid/clients"}


def test_wheel_contains_only_the_braid_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("braid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"braid", next(t for t in tops if t.endswith(".dist-info"))}, tops
    assert "braid/__init__.py" not in names  # braid is an implicit namespace package
    for folder, package in FOLDERS.items():
        sources = {str(p.relative_to(ROOT / folder)) for p in (ROOT / folder).rglob("*.py")
                   if "__pycache__" not in p.parts}
        packaged = {n[len(package) + 1:] for n in names if n.startswith(package + "/") and n.endswith(".py")}
        assert sources <= packaged, f"{folder}: missing from the wheel: {sorted(sources - packaged)}"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert "[vllm.general_plugins]\nbraid = braid.server.engines.vllm.plugin:register" in entry_points.decode()
