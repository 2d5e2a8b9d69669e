import subprocess
import sys


def test_scidiff_does_not_load_graphs_and_graphs_does_not_load_lightning():
    code = ("import sys, scidiff, scidiff.cli; "
            "assert not any(m in sys.modules for m in ('scidiff.graphs', 'torch_geometric', 'rdkit')), 'heavy'; "
            "import scidiff.graphs; assert 'pytorch_lightning' not in sys.modules, 'lightning'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
