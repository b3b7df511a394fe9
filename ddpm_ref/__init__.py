"""ddpm_ref: a readable NumPy reference of denoising diffusion probabilistic models.

The package is a stack; each layer imports only the layers below it (tests check this):

1. math       ``schedules``, ``diffusion``, ``likelihood``, ``elbo``, ``embeddings`` — the equations
              of Ho et al. 2020, each in the function that names it (helpers: ``_checks``, ``_rng``)
2. layers     ``nn/`` — one file per layer, ``out, cache = op_forward(...)`` / ``op_backward(dout, cache)``,
              loop-level ``*_plain`` versions beside the fast ones
3. model      ``models/`` — the U-Net (plan, blocks, network) and the MLP for 2-D points
4. loop       ``data/``, ``optim``, ``train`` (Algorithm 1), ``sample`` (Algorithm 2, DDIM, guidance),
              ``checkpoint`` and ``runs`` (a run directory: model + config + checkpoint)
5. commands   ``cli`` and ``commands/`` — ``ddpm-ref demo | train | sample | evaluate | figures | bench``

Beside the stack, in clearly named places of their own: ``evaluation/`` (the digit classifier and
the scores of ``ddpm-ref evaluate``), ``plots/`` (every figure of the lessons, drawn by
``ddpm-ref figures`` and by the lessons), ``bench/`` (the benchmark and its PyTorch twin: the only
code outside ``tests/`` that imports PyTorch). The exercise checkers and their solutions live
beside the notebooks in ``lessons/course/`` and are not part of the installed package.

Conventions used everywhere in this package (see README.md, "Conventions"):

* Timesteps follow the paper, t = 1..T. Schedule arrays have length T + 1 and are indexed by t;
  index 0 means "no noise" (beta_0 = 0, alpha_0 = 1, alpha_bar_0 = 1). diffusers and
  improved-diffusion index their arrays 0..T-1 instead: their index i is our t = i + 1.
* Schedules are computed in float64.
* Images are NCHW arrays scaled to [-1, 1].
* Every random draw takes a ``numpy.random.Generator`` or a seed; nothing reads NumPy's global
  random state.
"""

__version__ = "0.1.0"
