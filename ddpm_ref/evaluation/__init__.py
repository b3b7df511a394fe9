r"""Evaluation: bits/dim from the bound on held-out digits, and a sample-quality score with baselines.

**Bits/dim.** ``bits_per_dim`` estimates the variational bound (eq. 5 of Ho et al.,
``ddpm_ref.elbo.vlb_estimate``) on held-out images: L_T + (T/m) Σ_{t∈S} L_{t−1} over m timesteps
drawn uniformly (unbiased for the full sum; m = T is the exact one-sample bound). The decoder
L_0 is the discretised Gaussian of the paper with 256 bins on [−1, 1]. (The digits have only 17
grey levels, so a model could in principle do much better than an 8-bit bound suggests; the
number is for comparing models, as in the paper.)

**Fréchet digit distance (FDD).** The idea of FID (Heusel et al. 2017) at 8×8: a small digit
classifier is trained here, in NumPy, deterministically (fixed seed, full-batch Adam, fixed step
count) on the training digits; its hidden layer (64 tanh units) is the feature space. The score
of a set of images is the Fréchet distance between Gaussians fitted to their features and to the
features of the training digits:

.. math::  d^2 = \|μ_1 − μ_2\|^2 + \mathrm{Tr}\big(Σ_1 + Σ_2 − 2 (Σ_1^{1/2} Σ_2 Σ_1^{1/2})^{1/2}\big)

Lower is better. It is reported with two **baselines**: the held-out test digits (what a perfect
model scores, limited by sample size) and pure noise (uniform on [−1, 1]). The classifier also
gives a **label accuracy** for class-conditional samples: the fraction it classifies as the class
they were asked for.

Layer: tooling (used by ``ddpm-ref evaluate`` and the lessons; not part of the DDPM reference).
``classifier.py`` holds the digit classifier, ``metrics.py`` the scores.
"""

from ddpm_ref.evaluation.classifier import DigitClassifier, digit_classifier
from ddpm_ref.evaluation.metrics import baselines, bits_per_dim, fdd, frechet_distance, label_accuracy

__all__ = ["DigitClassifier", "digit_classifier", "frechet_distance", "fdd", "bits_per_dim",
           "baselines", "label_accuracy"]
