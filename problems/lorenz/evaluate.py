"""Samples of a Lorenz-63 trajectory prior against the simulator: marginal statistics, the law of max_t x, dynamics.

Run: ``OMP_NUM_THREADS=1 python problems/lorenz/evaluate.py --prior lorenz63.safetensors`` (default: the shipped
prior). Prints a Markdown table for the model card (:func:`scidiff.dynamics.evaluation.compare_to_simulator`).
"""

from scidiff.dynamics.evaluation import main

if __name__ == "__main__":
    main(system="lorenz63", pretrained="lorenz63")
