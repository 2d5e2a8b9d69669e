"""Config YAML cannot make ``scidiff fit`` import or build classes outside an allow-list."""

import sys
from pathlib import Path

import pytest
import yaml

from scidiff.cli import DisallowedClassError, check_class_paths
from scidiff.cli import run as main

ROOT = Path(__file__).resolve().parents[2]
EVIL = '''
from pathlib import Path
Path({imported!r}).write_text("imported")

from pytorch_lightning.callbacks import Callback

class Boom(Callback):
    def __init__(self):
        Path({built!r}).write_text("built")
'''


@pytest.fixture
def evil_module(tmp_path, monkeypatch):
    """A module that leaves marker files when imported and when its class is built."""
    imported, built = tmp_path / "imported", tmp_path / "built"
    (tmp_path / "evil_mod.py").write_text(EVIL.format(imported=str(imported), built=str(built)))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield imported, built
    sys.modules.pop("evil_mod", None)


def _config_with_callback(tmp_path, class_path: str) -> Path:
    config = yaml.safe_load((ROOT / "problems/grf/fit.yaml").read_text())
    config["trainer"]["callbacks"].append({"class_path": class_path})
    path = tmp_path / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


TINY = ["--trainer.max_steps=1", "--data.generate.n=8", "--data.generate.res=8", "--model.network=mlp",
        "--model.network_kwargs={hidden: 8, depth: 1}", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]


def test_yaml_naming_a_foreign_class_is_refused_before_import(tmp_path, evil_module):
    imported, built = evil_module
    config = _config_with_callback(tmp_path, "evil_mod.Boom")
    with pytest.raises(DisallowedClassError, match=r"class_path 'evil_mod.Boom' at trainer.callbacks\[1\] is not allowed"):
        main(["fit", "-c", str(config), *TINY, f"--trainer.default_root_dir={tmp_path}"])
    assert not imported.exists() and not built.exists()


def test_command_line_class_is_checked_before_it_is_built(tmp_path, evil_module):
    _, built = evil_module
    with pytest.raises(DisallowedClassError, match="evil_mod.Boom"):
        main(["fit", "-c", str(ROOT / "problems/grf/fit.yaml"), *TINY, f"--trainer.default_root_dir={tmp_path}",
              "--trainer.callbacks+=evil_mod.Boom"])
    assert not built.exists()


def test_allow_list_accepts_project_optimiser_and_lightning_classes(monkeypatch):
    ok = {"trainer": {"callbacks": [{"class_path": "pytorch_lightning.callbacks.ModelCheckpoint"},
                                    {"class_path": "lightning.pytorch.callbacks.EarlyStopping"},
                                    {"class_path": "scidiff.data.writers.NetCDFPredictionWriter"}],
                      "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger"}},
          "optimizer": {"class_path": "torch.optim.AdamW"}}
    check_class_paths(ok)
    for bad in ("os.system", "subprocess.Popen", "torch.nn.Module", "builtins.eval", "scidiffx.Evil", 3):
        with pytest.raises(DisallowedClassError, match="is not allowed"):
            check_class_paths({"model": {"init_args": {"inner": [{"class_path": bad}]}}})
    monkeypatch.setenv("SCIDIFF_ALLOW_CLASSES", "mylab.callbacks.")
    check_class_paths({"trainer": {"callbacks": [{"class_path": "mylab.callbacks.Watch"}]}})
    with pytest.raises(DisallowedClassError, match="SCIDIFF_ALLOW_CLASSES"):
        check_class_paths({"trainer": {"callbacks": [{"class_path": "mylab.other.Watch"}]}})
