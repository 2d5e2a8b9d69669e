"""The GPU check script runs every sampler and kernel (tiny, on the CPU) and reports each as a row."""

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_gpu_check_runs_every_sampler_and_kernel(tmp_path, capsys):
    gpu_check = load()
    rows = gpu_check.main(["--tiny", "--res", "8", "--steps", "2", "--compile", "heun", "--json", str(tmp_path / "rows.json")])
    assert [r.error for r in rows if r.error] == []
    fp32 = {r.name for r in rows if r.variant == "fp32"}
    assert fp32 == set(gpu_check.ALL)
    assert {r.name for r in rows if r.variant == "bf16"} == set(gpu_check.UNCONDITIONAL + gpu_check.POSTERIOR)
    assert {r.name for r in rows if r.variant == "compile"} == {"heun"}  # graph capture (eager backend)
    assert all(r.compile_s > 0 for r in rows if r.variant == "compile")
    assert all(r.samples_per_s > 0 and r.cpu_samples_per_s > 0 for r in rows)
    out = capsys.readouterr().out
    assert "| 8 | mcgdiff | bf16 |" in out and (tmp_path / "rows.json").exists()


def test_a_failing_row_is_reported_not_raised(capsys):
    gpu_check = load()
    rows = gpu_check.check(["heun"], [8], ["fp32"], [], 2, 2, 1, 2, True, budget=-1.0, device=gpu_check.torch.device("cpu"))
    assert rows[0].error.startswith("skipped: past the")
