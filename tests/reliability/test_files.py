"""Unsafe, corrupt and tampered files are refused with a clear error; interrupted writes never look complete."""

import json
import os
import pickle
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from scidiff.io import UnsafeFileError, export_safetensors, load_checkpoint, load_prior
from scidiff.priors import DiffusionPrior

ROOT = Path(__file__).resolve().parents[2]


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    prior = DiffusionPrior([1, 8], network="mlp", network_kwargs={"hidden": 8, "depth": 1}, ema_decay=0.0)
    path = export_safetensors(prior, tmp_path_factory.mktemp("x") / "p.safetensors")
    return path, load_file(path)


def _resave(tmp_path, tensors, **metadata):
    config = {"shape": [1, 8], "network": "mlp", "network_kwargs": {"hidden": 8, "depth": 1}}
    meta = {"format": "scidiff.prior", "format_version": "1", "config": json.dumps(config)}
    path = tmp_path / "t.safetensors"
    save_file(tensors, path, metadata={**meta, **metadata})
    return path


def test_pickles_that_run_code_are_refused_in_every_container(tmp_path):
    for i, payload in enumerate([{"state_dict": _RunsCode()}, _RunsCode(), [torch.zeros(2), _RunsCode()]]):
        legacy, zipped = tmp_path / f"legacy{i}.ckpt", tmp_path / f"zip{i}.ckpt"
        legacy.write_bytes(pickle.dumps(payload))
        torch.save(payload, zipped)
        for path in (legacy, zipped):
            with pytest.raises(UnsafeFileError, match="refusing to load"):
                load_checkpoint(path)


def test_truncated_and_garbage_checkpoints(tmp_path, export):
    prior = DiffusionPrior([1, 8], network="mlp", network_kwargs={"hidden": 8, "depth": 1})
    full = tmp_path / "full.ckpt"
    torch.save({"state_dict": prior.state_dict(), "hyper_parameters": dict(prior.hparams)}, full)
    (tmp_path / "half.ckpt").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UnsafeFileError, match="not a readable torch checkpoint"):
        load_prior(tmp_path / "half.ckpt")
    (tmp_path / "noise.ckpt").write_bytes(random.Random(0).randbytes(256))  # seeded: the same garbage every run
    with pytest.raises(UnsafeFileError):
        load_prior(tmp_path / "noise.ckpt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.ckpt")
    with pytest.raises(UnsafeFileError, match="not a DiffusionPrior checkpoint"):
        load_prior(tmp_path / "other.ckpt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_prior(tmp_path / "absent.ckpt")
    path, _ = export
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UnsafeFileError, match="not a valid safetensors file"):
        load_prior(tmp_path / "cut.safetensors")


@pytest.mark.parametrize("change, message", [
    ({"format": "other.tool"}, "not a scidiff prior export"),
    ({"format_version": "99"}, "format version '99'"),
    ({"config": "{not json"}, "unreadable 'config'"),
    ({"config": "[1, 2]"}, "not a mapping"),
    ({"config": json.dumps({"shape": [1, 8], "network": "mlp", "on_load": "os.system"})}, "unknown keys \\['on_load'\\]"),
    ({"config": json.dumps({"network": "mlp"})}, "'shape' is required"),
    ({"config": json.dumps({"shape": [1, 8], "network": "evil.Net"})}, "unknown network"),
    ({"config": json.dumps({"shape": [1, 8], "network": "mlp", "network_kwargs": {"hidden": 16, "depth": 1}})}, "shapes do not match"),
    ({"config": json.dumps({"shape": [1, 8], "network": "mlp", "network_kwargs": {"hidden": 8, "depth": 2}})}, "does not match its configuration"),
])
def test_tampered_safetensors_config_is_refused(tmp_path, export, change, message):
    _, tensors = export
    with pytest.raises((UnsafeFileError, ValueError), match=message):
        load_prior(_resave(tmp_path, tensors, **change))


def test_tampered_weights_are_refused(tmp_path, export):
    _, tensors = export
    bad = dict(tensors)
    key = next(k for k in bad if k.endswith("weight"))
    bad[key] = bad[key].clone()
    bad[key].view(-1)[0] = float("nan")
    with pytest.raises(UnsafeFileError, match=f"non-finite values in {key}"):
        load_prior(_resave(tmp_path, bad))
    bad = dict(tensors)
    bad["norm_std"] = -bad["norm_std"]
    with pytest.raises(UnsafeFileError, match="norm_std"):
        load_prior(_resave(tmp_path, bad))


def test_posterior_file_missing_a_variable(tmp_path):
    from scidiff.inverse import Posterior

    Posterior(torch.zeros(2, 1, 4)).save(tmp_path / "p.nc")
    with pytest.raises(KeyError, match=r"has no variable 'u'"):
        Posterior.load(tmp_path / "p.nc", name="u")


KILLED_WRITER = """
import os, signal, sys
from scidiff._files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"half a result")
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_write_killed_midway_never_looks_complete(tmp_path):
    target = tmp_path / "result.nc"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".result.nc.") and p.name.endswith(".part") for p in leftovers), leftovers


def test_a_write_that_raises_leaves_nothing(tmp_path):
    from scidiff._files import atomic_path

    target = tmp_path / "out.safetensors"
    target.write_bytes(b"previous complete result")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            Path(tmp).write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"previous complete result"  # the old result is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]
