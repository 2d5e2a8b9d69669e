"""problems/moses_small/train.py: a run continued with --init starts from the saved weights and records both stages."""

import importlib.util
from pathlib import Path

import pytest
import torch

from scidiff.graphs import load_model

SCRIPT = Path(__file__).resolve().parents[2] / "problems" / "moses_small" / "train.py"
TINY = ["--max-atoms", "9", "--batch-size", "4", "--hidden", "8", "--hidden-e", "4", "--layers", "1", "--T", "5",
        "--warmup", "0", "--every", "0"]


def _script():
    spec = importlib.util.spec_from_file_location("moses_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_continues_from_saved_weights(tmp_path):
    train = _script()
    first = train.main(TINY + ["--steps", "2", "--out", str(tmp_path / "a")])
    start, _ = load_model(tmp_path / "a.safetensors")
    second = train.main(TINY + ["--steps", "1", "--lr", "0", "--init", str(tmp_path / "a.safetensors"),
                                "--out", str(tmp_path / "b")])
    assert second["init_record"]["steps"] == first["steps"] == 2
    cont, info = load_model(tmp_path / "b.safetensors")
    assert info["init_record"]["graphs_seen"] == first["graphs_seen"]
    # with a zero learning rate the continued model is the saved one: the weights were loaded, not re-initialised
    for key, value in start.state_dict().items():
        assert torch.equal(value, cont.state_dict()[key]), key
    third = train.main(TINY + ["--steps", "1", "--lr", "0", "--init", str(tmp_path / "b.safetensors"),
                               "--out", str(tmp_path / "c")])
    assert third["init_record"]["steps"] == 1 and third["init_record"]["init_record"]["steps"] == 2  # every stage kept


def test_init_refuses_a_different_block_order(tmp_path):
    train = _script()
    train.main(TINY + ["--steps", "1", "--out", str(tmp_path / "a")])
    with pytest.raises(ValueError, match="max_hops"):
        train.main(TINY + ["--steps", "1", "--hops", "1", "--init", str(tmp_path / "a.safetensors"),
                           "--out", str(tmp_path / "b")])


def test_lockstep_pair_ends_at_the_same_step(tmp_path):
    """Two runs of different cost paced by files stop at one common step, the slow one never left behind."""
    import threading
    import time

    train = _script()
    a, b = tmp_path / "a.pace", tmp_path / "b.pace"
    fast, slow = train.Lockstep(a, b, seconds=0.3, slack=3), train.Lockstep(b, a, seconds=0.3, slack=3)
    steps, gaps = {}, []

    def run(pacer, name, cost):
        step, t0 = 0, time.perf_counter()
        while not pacer(step, time.perf_counter() - t0):
            time.sleep(cost)
            step += 1
            if name == "fast" and "slow_now" in steps:
                gaps.append(step - steps["slow_now"])
            if name == "slow":
                steps["slow_now"] = step
        steps[name] = step

    threads = [threading.Thread(target=run, args=(fast, "fast", 0.001)), threading.Thread(target=run, args=(slow, "slow", 0.01))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert steps["fast"] == steps["slow"] > 5
    assert max(gaps) <= 4  # the fast run waited for the slow one (slack 3, plus one step in flight)


def test_training_from_a_graph_file_needs_no_rdkit(tmp_path):
    """Featurise with RDKit, then train from the file in a process where RDKit cannot be imported; there the
    chemistry functions raise an ImportError that names RDKit."""
    import subprocess
    import sys

    train = _script()
    graphs = tmp_path / "g.safetensors"
    assert train.main(["--max-atoms", "9", "--save-graphs", str(graphs)])["graphs"] == 37
    args = TINY + ["--graphs", str(graphs), "--steps", "2", "--device", "auto", "--out", str(tmp_path / "m")]
    code = ("import sys, runpy; sys.modules['rdkit'] = None; "  # None in sys.modules: 'import rdkit' raises ImportError
            f"sys.argv = [{str(SCRIPT)!r}] + {args!r}; runpy.run_path({str(SCRIPT)!r}, run_name='__main__'); "
            "assert 'rdkit' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]\n"
            "from scidiff.graphs import smiles_to_data\n"  # chemistry itself names the missing package
            "try:\n    smiles_to_data('CCO')\nexcept ImportError as e:\n    assert 'needs RDKit' in str(e), e\n"
            "else:\n    raise SystemExit('smiles_to_data ran without RDKit')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=SCRIPT.parents[2])
    assert result.returncode == 0, result.stderr
    model, info = load_model(tmp_path / "m.safetensors")
    assert info["steps"] == 2 and info["train_molecules"] == 37 and info["device"] == "cpu"
