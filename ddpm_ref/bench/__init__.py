"""``ddpm-ref bench``: how fast the NumPy U-Net trains and samples, next to PyTorch on the same CPU.

What is timed (each with warm-up calls first, then ``repeats`` timed calls; the median is
reported, the minimum alongside):

* **training step** of the demo's model (``ddpm_ref.train.DEMO_MODEL``: 32 base channels,
  channel_mults (1, 2), attention at 4×4, one ResBlock per level, 10 classes) on 8×8 inputs:
  forward, the L_simple gradient, backward, Adam update (``ddpm_ref.optim.Adam``);
* **sampling forward**: one forward without caches (``keep_cache=False``);
* both for NumPy in two ways on the same thread count: one pass with BLAS on all threads, and
  the batch split into one shard per thread with one BLAS thread each (``UNet(workers=...)``,
  ``ddpm_ref.models.parallel``);
* **the heaviest layers** alone (the widest 3×3 convolutions, a group norm, the fused group
  norm + SiLU of the ResBlocks, the attention),
  forward and forward + backward.

When PyTorch is importable, the *identical* architecture (``ddpm_ref.torch_mirror``, built from
the same plan with the same weights: the run first checks that both give the same ε̂ and the same
gradients) runs side by side in the same process, with ``torch.optim.Adam``, and every line gets
the ratio NumPy / PyTorch.

Threads: both libraries get the same count. NumPy's BLAS is limited with ``threadpoolctl``
(a dependency of scikit-learn, so always present), PyTorch with ``torch.set_num_threads``.
NumPy's element-wise operations are single-threaded either way.

Layer: tooling, beside the reference (it times the model; nothing in the reference imports it).
This folder is the only code outside ``tests/`` that imports PyTorch. Its files:
``timing.py`` (threads, the timer), ``steps.py`` (the NumPy and PyTorch training steps),
``layers.py`` (single layers), ``profile.py`` (time per layer), ``run.py`` (the driver and the
report), ``torch_twin.py`` (the same U-Net in PyTorch). Beside them, ``latent_vs_pixel.py`` is a
benchmark of another kind (``python -m ddpm_ref.bench.latent_vs_pixel``, minutes, not seconds): it
trains a latent and a pixel U-Net side by side and reports the training time each needs to reach the
same Fréchet digit distance (lesson 17); ``prompt_holdout.py`` (``python -m ddpm_ref.bench.prompt_holdout``)
trains the prompt model with one digit's stroke words held out of every caption and measures whether
"thick" and "thin" still work for it (lesson 17). Both end in ``committed_run.py`` (print the report, write
the result with its command as JSON).
"""

from ddpm_ref.bench.profile import profile_step
from ddpm_ref.bench.run import format_report, run_bench
from ddpm_ref.bench.timing import limit_threads, time_call

__all__ = ["limit_threads", "time_call", "run_bench", "format_report", "profile_step"]
