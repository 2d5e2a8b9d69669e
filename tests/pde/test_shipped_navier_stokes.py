"""The shipped Navier--Stokes prior has learnt the flow: in its own samples, w(t=1) is what the solver makes of w(t=0)."""

import numpy as np

from scidiff.diffusion import seeded_generators
from scidiff.pde import solve_navier_stokes
from scidiff.pde.problem import rel_l2
from scidiff.priors import DiffusionPrior


def test_navier_stokes32_pairs_obey_the_solver():
    prior = DiffusionPrior.from_name_or_path("navier_stokes32").eval().requires_grad_(False)
    assert prior.shape == (2, 32, 32)
    x = prior.sample(6, 24, generator=seeded_generators(range(6)), progress=False).double().numpy()
    w1 = solve_navier_stokes(x[:, 0], 1.0, 1, dt=5e-3)[:, -1]  # the training pairs' solver step
    solved = np.median([rel_l2(s, w) for s, w in zip(w1, x[:, 1])])
    # a prior that ignored the dynamics would do no better than persistence, w(1) = w(0)
    persistence = np.median([rel_l2(w0, w) for w0, w in zip(x[:, 0], x[:, 1])])
    # measured 0.05 against 0.49 (seeds 0-5, 24 Heun steps)
    assert solved < 0.25 * persistence
