"""benchmarks/cpu_by_process.py: names processes by kind and attributes a child's CPU to it.
No timing is asserted: the child burns a fixed amount of work, whatever the machine's speed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("cpu_by_process", REPO_ROOT / "benchmarks" / "cpu_by_process.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kinds_name_ray_actors_by_class_and_python_by_script_or_module():
    kind_of = _load().kind_of
    assert kind_of(["ray::TrainController.run"], "ray::TrainContr") == "ray::TrainController"
    assert kind_of(["ray::ServeReplica:fabray:Predictor"], "x") == "ray::ServeReplica"
    assert kind_of(["/v/bin/python3.11", "-u", "/x/bench/serve.py", "--run", "r"], "python") == "python serve.py"
    assert kind_of(["/v/bin/python", "-m", "pytest", "-q"], "python") == "python -m pytest"
    assert kind_of(["/opt/ray/core/src/ray/raylet/raylet", "--x"], "raylet") == "raylet"
    assert kind_of([], "kworker/0:1") == "kworker/0:1"


def test_a_childs_cpu_is_attributed_to_its_script(tmp_path):
    bench = _load()
    script = tmp_path / "burn.py"
    script.write_text("x = 0\nfor i in range(3_000_000):\n    x += i * i\n")
    out = tmp_path / "cpu.json"
    assert bench.main(["--json", str(out), "--interval", "0.05", "--", sys.executable, str(script)]) == 0
    result = json.loads(out.read_text())
    assert result["returncode"] == 0 and result["machine_cpus"] >= 1
    assert result["by_kind_cpu_s"].get("python burn.py", 0.0) > 0.05  # the loop's own CPU
    assert result["machine_cpu_s"] >= result["by_kind_cpu_s"]["python burn.py"]
    assert bench.main(["--json", str(out), "--", sys.executable, "-c", "raise SystemExit(3)"]) == 1
