"""Samples of a Lorenz-96 trajectory prior against the simulator (marginals of x0-x3, law of max_t x0, dynamics).

Run: ``OMP_NUM_THREADS=1 python problems/lorenz96/evaluate.py --prior outputs/lorenz96/logs/version_0/checkpoints/last.ckpt``.
"""

from scidiff.dynamics.evaluation import main

if __name__ == "__main__":
    main(system="lorenz96", variables=4)
