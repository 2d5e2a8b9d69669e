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
