"""Samples of a FitzHugh-Nagumo trajectory prior against the simulator (marginals, law of max_t v1, dynamics).

Run: ``OMP_NUM_THREADS=1 python problems/fhn/evaluate.py --prior outputs/fhn/logs/version_0/checkpoints/last.ckpt``.
"""

from scidiff.dynamics.evaluation import main

if __name__ == "__main__":
    main(system="fitzhugh_nagumo")
