import numpy as np
import pytest
import torch
import yaml

from scidiff.cli import run
from scidiff.volumes import random_ellipsoids, read_volume, to_xarray, write_nifti
from scidiff.volumes.pipeline import reconstruct


@pytest.fixture(scope="module")
def phantom():
    return to_xarray(random_ellipsoids((4, 16, 16), generator=torch.Generator().manual_seed(7)), (2.0, 1.0, 1.0))


def test_reconstruct_cli_admm_tv_beats_fbp(tmp_path, phantom):
    write_nifti(phantom, tmp_path / "in.nii.gz")
    cfg = {"operator": {"kind": "sparse_view", "n_views": 4}, "method": "admm_tv", "method_args": {"n_iter": 10, "n_cg": 10}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    report = run(["reconstruct", "-c", str(tmp_path / "c.yaml"), "--input", str(tmp_path / "in.nii.gz"), "-o", str(tmp_path / "out.nc")])
    rec = read_volume(tmp_path / "out.nc")
    assert rec.shape == phantom.shape and rec.dims == ("z", "y", "x")
    np.testing.assert_allclose(rec.z.values, phantom.z.values)
    assert (tmp_path / "out.png").stat().st_size > 1000
    _, fbp_report = reconstruct({**cfg, "method": "fbp", "method_args": {}}, phantom)
    assert report["psnr_vs_input_db"] > fbp_report["psnr_vs_input_db"] + 2


def test_reconstruct_with_a_slice_prior(tmp_path, phantom):
    from scidiff.priors import DiffusionPrior

    prior = DiffusionPrior([1, 16, 16], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]}, sigma_max=10.0)
    prior.export(tmp_path / "p.safetensors")
    cfg = {"operator": {"kind": "limited_angle", "range_deg": 90.0, "step_deg": 10.0}, "method": "dds",
           "method_args": {"n_steps": 3}, "prior": str(tmp_path / "p.safetensors")}
    rec, report = reconstruct(cfg, phantom)
    assert rec.shape == phantom.shape and np.isfinite(rec.values).all()
    assert report["method"] == "dds"


def test_reconstruct_ensemble_mean_and_std(tmp_path, phantom):
    # n_samples > 1: the mean of seeds 3, 4, 5 (whatever the batch size) and their std (Posterior.std: 1/N), written
    # beside the output
    from scidiff.priors import DiffusionPrior

    prior = DiffusionPrior([1, 16, 16], network_kwargs={"base_channels": 8, "channel_mults": [1, 2]}, sigma_max=10.0)
    prior.export(tmp_path / "p.safetensors")
    cfg = {"operator": {"kind": "sparse_view", "n_views": 4}, "method": "dds", "method_args": {"n_steps": 3},
           "prior": str(tmp_path / "p.safetensors"), "seed": 3}
    singles = [reconstruct({**cfg, "seed": s}, phantom)[0].values for s in (3, 4, 5)]
    rec, report = reconstruct({**cfg, "n_samples": 3, "batch_size": 2}, phantom)
    np.testing.assert_allclose(rec.values, np.mean(singles, 0), atol=1e-4)
    np.testing.assert_allclose(report["std"].values, np.std(singles, 0), atol=1e-4)
    assert report["n_samples"] == 3 and report["std"].dims == ("z", "y", "x")
    write_nifti(phantom, tmp_path / "in.nii.gz")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**cfg, "n_samples": 2}))
    out = run(["reconstruct", "-c", str(tmp_path / "c.yaml"), "--input", str(tmp_path / "in.nii.gz"), "-o", str(tmp_path / "r.nii.gz")])
    std = read_volume(out["std"])
    assert out["std"].endswith("r_std.nii.gz") and std.shape == phantom.shape and float(std.min()) >= 0
    with pytest.raises(ValueError, match="deterministic"):
        reconstruct({**cfg, "method": "admm_tv", "method_args": {}, "n_samples": 2}, phantom)


def test_errors(phantom):
    with pytest.raises(ValueError, match="operator kind"):
        reconstruct({"operator": {"kind": "helical"}, "method": "fbp"}, phantom)
    with pytest.raises(ValueError, match="method must be one of"):
        reconstruct({"operator": {"kind": "sparse_view"}, "method": "sart"}, phantom)
    with pytest.raises(ValueError, match="needs a slice prior"):
        reconstruct({"operator": {"kind": "sparse_view"}, "method": "dds"}, phantom)
    with pytest.raises(ValueError, match="square"):
        reconstruct({"operator": {"kind": "sparse_view"}, "method": "fbp"}, phantom.isel(x=slice(0, 8)))


def test_problem_files_build_their_operators():
    # every reconstruction YAML of problems/ct3d names an operator kind and method the pipeline knows
    from pathlib import Path

    from scidiff.likelihoods.volume import SliceMRI, SliceTomography
    from scidiff.volumes.pipeline import METHODS, build_operator

    files = sorted(p for p in (Path(__file__).parents[2] / "problems" / "ct3d").glob("*.yaml") if not p.name.startswith("fit_"))
    assert {p.name for p in files} >= {"fan8_dds.yaml", "sv8_mbir.yaml", "mri4_admm_tv.yaml"}
    for p in files:
        cfg = yaml.safe_load(p.read_text())
        op = build_operator(cfg["operator"], 16)
        assert isinstance(op, (SliceTomography, SliceMRI)) and cfg["method"] in METHODS, p.name
    assert build_operator({"kind": "fan_beam", "n_views": 8}, 16).fan is not None


def test_reconstruct_fan_beam_admm_tv_beats_fbp(phantom):
    cfg = {"operator": {"kind": "fan_beam", "n_views": 4}, "method": "admm_tv", "method_args": {"n_iter": 10, "n_cg": 10}}
    _, report = reconstruct(cfg, phantom)
    _, fbp_report = reconstruct({**cfg, "method": "fbp", "method_args": {}}, phantom)
    assert report["psnr_vs_input_db"] > fbp_report["psnr_vs_input_db"] + 2
