"""The ``scidiff`` command.

* ``scidiff fit|validate|predict -c problems/<name>/fit.yaml`` -- Lightning's CLI on a DiffusionPrior and a
  FieldDataModule (``--print_config`` shows every option);
* ``scidiff sample --prior P --n 16 -o samples.nc`` -- draw samples from a trained prior into NetCDF;
* ``scidiff export CKPT OUT.safetensors`` -- export a checkpoint's sampling weights;
* ``scidiff datasets make grf --n 2000 --res 32 -o grf.nc`` -- generate a dataset;
* ``scidiff bridge -c problems/bridges_flower/config.yaml`` -- train and evaluate a constrained Schrödinger bridge;
* ``scidiff graphs -c problems/moses_small/config.yaml`` -- train, sample and score graph/molecule diffusion;
  ``scidiff sample --graphs model.ckpt -o samples`` writes SMILES + SDF (molecules) or graph6 (graphs);
* ``scidiff reconstruct -c problems/ct3d/sv8_dds.yaml --input volume.nii.gz -o recon.nii.gz`` -- measure a
  volume with a CT/MRI operator and reconstruct it (FBP, ADMM-TV, DiffusionMBIR, DDS), with a PNG of slices;
* ``scidiff posterior predict -c problems/grf/posterior.yaml`` -- one posterior per measurement set of a NetCDF
  file (Lightning predict: any number of devices, resumable, results written once);
* ``scidiff inverse -c problems/phantom_inpaint/config.yaml`` -- posterior sampling (DPS, RED-Diff, MCGdiff) on a
  held-out CT phantom with the shipped slice prior: NetCDF posterior and a PNG with the uncertainty map;
* ``scidiff pde -c problems/darcy/forward.yaml`` -- DiffusionPDE solve from sparse observations with the shipped
  joint Darcy prior (forward, inverse or both-sparse): NetCDF mean/std/truth/mask and a PNG;
* ``scidiff demo`` -- the end-to-end example on an embedded default.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._config import load_config

TOOLS = ("demo", "sample", "export", "datasets", "bridge", "graphs", "reconstruct", "posterior", "inverse", "pde")

#: Module prefixes a config's ``class_path`` may name. A YAML file is data: it must not make ``scidiff fit``
#: import and build arbitrary classes. Extend with ``SCIDIFF_ALLOW_CLASSES="mylab.callbacks.,mylab.loggers."``.
ALLOWED_CLASS_PREFIXES = (
    "scidiff.",
    "torch.optim.",
    "pytorch_lightning.callbacks.",
    "pytorch_lightning.loggers.",
    "lightning.pytorch.callbacks.",
    "lightning.pytorch.loggers.",
)


class DisallowedClassError(ValueError):
    """A config names a class outside the allow-list (:data:`ALLOWED_CLASS_PREFIXES`)."""


def check_class_paths(config, source: str = "config") -> None:
    """Refuse any ``class_path`` in a (nested) config outside the allow-list, before anything is imported."""
    extra = tuple(p.strip() for p in os.environ.get("SCIDIFF_ALLOW_CLASSES", "").split(",") if p.strip())
    allowed = ALLOWED_CLASS_PREFIXES + extra

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "class_path" and not (isinstance(value, str) and value.startswith(allowed)):
                    raise DisallowedClassError(
                        f"{source}: class_path {value!r} at {where or 'top level'} is not allowed; configs may only "
                        f"name classes under {', '.join(allowed)} (extend with SCIDIFF_ALLOW_CLASSES)"
                    )
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(config, "")


def _check_config_files(args: list[str]) -> None:
    """Scan YAML files named on the command line before the parser imports what they name."""
    import yaml

    for arg in args:
        path = Path(arg.partition("=")[2] if arg.startswith("--") and "=" in arg else arg)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            check_class_paths(yaml.safe_load(path.read_text()), str(path))


def _posterior(argv: list[str]):
    """``scidiff posterior predict -c cfg.yaml``: one posterior per measurement set of a NetCDF file.

    Lightning ``predict`` with :class:`~scidiff.priors.posterior_task.PosteriorTask` and
    :class:`~scidiff.data.datamodule.MeasurementDataModule`: ``--trainer.devices=N`` shards the measurements, a
    :class:`~scidiff.data.writers.NetCDFPredictionWriter` callback writes each result once and a rerun skips
    the ones already written.
    """
    from pytorch_lightning.cli import LightningCLI

    from .data.datamodule import MeasurementDataModule
    from .priors.posterior_task import PosteriorTask

    class PosteriorCLI(LightningCLI):
        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand] if self.subcommand else self.config
            check_class_paths(config.as_dict(), "the resolved configuration")

    _check_config_files(argv)
    return PosteriorCLI(PosteriorTask, MeasurementDataModule, args=argv, seed_everything_default=0,
                        save_config_kwargs={"overwrite": True})


def _lightning_cli(args: list[str]):
    from pytorch_lightning.cli import LightningCLI

    from .data.datamodule import FieldDataModule
    from .priors import DiffusionPrior

    class ScidiffCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            # The prior's event shape comes from the data: no duplicated key in the YAML.
            parser.link_arguments("data.event_shape", "model.shape", apply_on="instantiate")

        def before_instantiate_classes(self) -> None:
            # Command-line overrides are resolved by now: check the final config as well as the files.
            config = self.config[self.subcommand] if self.subcommand else self.config
            check_class_paths(config.as_dict(), "the resolved configuration")

    _check_config_files(args)
    return ScidiffCLI(
        DiffusionPrior,
        FieldDataModule,
        args=args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def _sample(argv: list[str]):
    if any(a == "--graphs" or a.startswith("--graphs=") for a in argv):
        from .graphs.cli import sample_main

        return sample_main(argv)
    import torch

    from .diffusion import seeded_generators
    from .inverse import Posterior
    from .priors import DiffusionPrior

    p = argparse.ArgumentParser(prog="scidiff sample", description="Draw samples from a trained prior into NetCDF.")
    p.add_argument("--prior", required=True, help="a .ckpt or .safetensors file")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--sampler", default="heun")
    p.add_argument("--seed", type=int, default=0, help="sample i uses seed + i, whatever the batch size")
    p.add_argument("-o", "--out", default="samples.nc")
    a = p.parse_args(argv)
    prior = DiffusionPrior.load(a.prior)
    with torch.no_grad():
        x = prior.sample(a.n, a.steps, sampler=a.sampler, generator=seeded_generators(range(a.seed, a.seed + a.n)))
    Posterior(x, info={"method": f"prior samples ({a.sampler}, {a.steps} steps)", "prior": str(a.prior)}).save(a.out)
    print(f"wrote {a.n} samples of shape {tuple(x.shape[1:])} to {Path(a.out).resolve()}")


def _export(argv: list[str]) -> None:
    from .priors import DiffusionPrior

    p = argparse.ArgumentParser(prog="scidiff export", description="Export a checkpoint to safetensors.")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--no-card", action="store_true", help="do not write a model card beside the export")
    a = p.parse_args(argv)
    prior = DiffusionPrior.load(a.checkpoint)
    path = prior.export(a.out)
    print(f"wrote {path.resolve()}")
    if not a.no_card and not a.checkpoint.endswith(".safetensors"):
        from .io import load_checkpoint
        from .priors.card import training_record, write_model_card

        record = training_record(load_checkpoint(a.checkpoint), Path(a.checkpoint))
        card = write_model_card(prior, record, path.with_suffix(".md"), source=f"scidiff export {a.checkpoint}")
        print(f"wrote {card.resolve()}")


def _datasets(argv: list[str]) -> None:
    from .data.netcdf import write_netcdf
    from .data.synthetic import GENERATORS, available, generate
    from .pde.datasets import main as pde_main

    p = argparse.ArgumentParser(prog="scidiff datasets", description="Generate a dataset as NetCDF.")
    sub = p.add_subparsers(dest="action", required=True)
    make = sub.add_parser("make", help=f"one of {available()}")
    make.add_argument("name", choices=available())
    a, rest = p.parse_known_args(argv)
    if a.name not in GENERATORS:  # PDE datasets have their own options (--workers, --param ...)
        pde_main([a.name, *rest])
        return
    make.add_argument("--n", type=int, default=1000)
    make.add_argument("--res", type=int, default=32)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("-o", "--out", required=True)
    a = p.parse_args(argv)
    ds = generate(a.name, n=a.n, res=a.res, seed=a.seed)
    print(f"wrote {write_netcdf(ds, a.out).resolve()}")


def _bridge(argv: list[str]) -> dict:
    from .bridges import run_problem
    from .bridges.problems import markdown_table

    p = argparse.ArgumentParser(prog="scidiff bridge", description="Train and evaluate a bridge problem.")
    p.add_argument("-c", "--config", required=True, help="a problems/bridges_*/config.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry (YAML value)")
    a = p.parse_args(argv)
    report = run_problem(load_config(a.config, a.set))
    print(markdown_table(report))
    return report


def _graphs(argv: list[str]) -> dict:
    from .graphs.cli import train_main

    return train_main(argv)


def _reconstruct(argv: list[str]) -> dict:
    from .volumes import read_volume, write_volume
    from .volumes.pipeline import reconstruct
    from .volumes.plot import orthogonal_slices_png

    p = argparse.ArgumentParser(prog="scidiff reconstruct", description="Measure a volume and reconstruct it.")
    p.add_argument("-c", "--config", required=True, help="a problems/ct3d/*.yaml")
    p.add_argument("--input", required=True, help="volume: .nii/.nii.gz, .nc or a DICOM folder")
    p.add_argument("-o", "--out", default="reconstruction.nii.gz", help=".nii/.nii.gz or .nc")
    p.add_argument("--png", default=None, help="orthogonal slices (default: next to --out)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config entry (YAML value)")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    config = load_config(a.config, a.set)
    volume = read_volume(a.input)
    rec, report = reconstruct(config, volume, progress=a.progress)
    out = write_volume(rec, a.out)
    png = Path(a.png) if a.png else out.with_name(out.name.split(".")[0] + ".png")
    panels = {"input": volume, report["method"]: rec}
    if "std" in report:  # ensembles: the voxel-wise std beside the mean, as <out>_std
        stem, ext = out.name.split(".")[0], out.name[len(out.name.split(".")[0]):]
        panels["posterior std"] = report["std"]
        report["std"] = str(write_volume(report["std"], out.with_name(f"{stem}_std{ext}")))
    orthogonal_slices_png(panels, png, own_scale=("posterior std",))
    report.update(output=str(out), png=str(png))
    print(report)
    return report


def _inverse(argv: list[str]) -> dict:
    from .inverse.imaging import main

    return main(argv)


def _pde(argv: list[str]) -> dict:
    from .pde.cli import main as pde_main

    return pde_main(argv)


def _demo(argv: list[str]) -> dict:
    from .demo import main as demo_main

    return demo_main(argv)


def run(argv: list[str]):
    """Run one ``scidiff`` command in-process (tests, notebooks); returns what the command returns."""
    if argv and argv[0] in TOOLS:
        return {"demo": _demo, "sample": _sample, "export": _export, "datasets": _datasets, "bridge": _bridge,
                "graphs": _graphs, "reconstruct": _reconstruct,
                "posterior": _posterior, "inverse": _inverse, "pde": _pde}[argv[0]](argv[1:])
    return _lightning_cli(argv)


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``scidiff ...``)."""
    run(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
