"""ddpm_ref: a readable NumPy reference of denoising diffusion probabilistic models.

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
