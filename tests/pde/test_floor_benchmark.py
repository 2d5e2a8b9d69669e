"""benchmarks/pde_floor.py: the exact-posterior floor of the Darcy forward problem runs and beats a coin flip."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_floor_rows_on_a_tiny_grid(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its sibling benchmarks/pde.py
    for name in ("pde_floor", "pde"):  # a namespace package named pde (tests/pde) must not stand in for it
        sys.modules.pop(name, None)
    import pde_floor

    rows = pde_floor.floor_rows(16, 2, 0.1, 4, [5], seed=2)
    by_name = {name: mean for _, _, name, _, mean, _ in rows}
    assert by_name["interpolate a + solver"] > 0
    majority = by_name["exact posterior, 5 sweeps: majority of 4 draws"]
    assert 0 <= majority < 0.5  # 26 observed nodes of 256: the posterior knows more than a coin
    assert by_name["exact posterior, 5 sweeps: mean of the solver over 4 draws"] < 1.0
