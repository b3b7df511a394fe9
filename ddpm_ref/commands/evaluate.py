"""``ddpm-ref evaluate``: bits/dim on the held-out digits and the Fréchet digit distance of samples.

Layer: command line (imports anything below it; commands do not import each other).

    ddpm-ref evaluate --run-dir runs/demo                 # ~1-2 minutes on 2 cores
    ddpm-ref evaluate --run-dir runs/demo --num-t 1000    # the exact (one-sample) bound, slower
    ddpm-ref evaluate --run-dir runs/demo --json eval.json

Reports (see ``ddpm_ref.evaluation``): the bound in bits/dim on the test split (beside that of an
untrained model, ε̂ = 0, which needs no network), then the FDD of
``-n`` samples next to its baselines at the same sample size — the held-out digits themselves and
uniform noise — and, for a class-conditional model, how often the classifier agrees with the
label the sample was drawn for (a prompt model, ``train --prompts``: sample i is drawn for the
prompt naming digit i mod 10, "zero" ... "nine"; its bits/dim use the null prompt).

A latent run (``train --latent``) is scored on its samples decoded to digits, so its FDD and label
accuracy compare with a pixel run's; its bits/dim are not reported: its bound is on the latents, not
on the 8-bit pixels of the test digits (the decoder is not part of the diffusion model's likelihood).
"""

from __future__ import annotations

import argparse

HELP = "bits/dim on held-out digits and a sample-quality score (FDD) with baselines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ddpm_ref.preflight import count

    parser.add_argument("--run-dir", "--run", dest="run_dir", default="runs/demo", help="the run (or a checkpoint .npz); default: runs/demo")
    parser.add_argument("--num-t", type=int, default=100, help="timesteps per batch for the bound (default: 100)")
    parser.add_argument("-n", "--n", "--num", dest="num", type=count, default=None, help="samples for the FDD (default: the test split's size)")
    parser.add_argument("--sampler", "--method", dest="sampler", choices=("ddpm", "ddim"), default="ddim")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps (default: 50)")
    parser.add_argument("--ddpm-steps", type=int, default=None,
                        help="DDPM with this many of the T steps, respaced (default: all T, Algorithm 2)")
    parser.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance w (default: 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-bpd", action="store_true", help="skip the bound")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    parser.add_argument("--no-progress", action="store_true")


def evaluate_run(model, meta, *, num_t=100, n=None, sampler="ddim", steps=50, ddpm_steps=None, guidance=0.0,
                 seed=0, bpd=True, progress=True, decode=None) -> dict:
    """The numbers of ``ddpm-ref evaluate`` as a dict. ``decode``: for a latent run, latents → digits
    (``ddpm_ref.latent.decode_latents``); the samples are decoded before they are scored, and ``bpd``
    must be False (the bound would be on the latents)."""
    import numpy as np

    from ddpm_ref.data import load_digits_images
    from ddpm_ref.evaluation import baselines, bits_per_dim, fdd, label_accuracy
    from ddpm_ref.sample import ModelEps

    cfg = model.config
    if decode is not None and bpd:
        raise ValueError("bits/dim of a latent run would bound the likelihood of its latents, not of the test "
                         "digits' pixels: evaluate it with bpd=False (--no-bpd)")
    if decode is None and (cfg.get("image_size") != 8 or cfg.get("in_channels") != 1):
        raise ValueError("evaluate scores models of 8×8 grey-scale digits (a run trained with --data digits); "
                         f"this model takes {cfg.get('image_size') or 'point'} inputs")
    sched, prediction = _schedule_and_prediction(meta)
    x_test, _ = load_digits_images("test", seed=0, dtype=cfg["dtype"])
    n = len(x_test) if n is None else n
    out = {"step": int(meta["step"])}
    if bpd:
        out.update(bits_per_dim(ModelEps(model), sched, x_test, num_t=num_t, rng=seed, progress=progress,
                                prediction=prediction))
        zero = bits_per_dim(lambda xt, t: np.zeros_like(xt), sched, x_test, num_t=num_t, rng=seed, progress=False)
        out["bpd_zero_model"] = zero["bpd"]             # baseline: an untrained model (ε̂ = 0)
    eps, y = _conditioning(model, n, out)
    if guidance and y is None:
        raise ValueError("--guidance needs a class-conditional model; this one has no classes")
    shape = (n, cfg["in_channels"], cfg["image_size"], cfg["image_size"])       # (n, 1, 8, 8), or latents
    x, name = _draw(eps, sched, shape, sampler, steps, ddpm_steps, dict(rng=seed, y=y, guidance=guidance,
                                                                        progress=progress, prediction=prediction))
    if decode is not None:
        x = decode(x)                                                    # x̂ = D(z / s): digits
        out["decoded"] = True
    out.update({"sampler": name, "guidance": guidance, "fdd_samples": fdd(x), "n_samples": n})
    if y is not None:
        out["accuracy_samples"] = label_accuracy(x, y)
    out.update(baselines(min(n, len(x_test)), seed=seed))
    return out


def _schedule_and_prediction(meta):
    """The run's schedule (``TrainConfig.make_schedule``: rescaled for zero terminal SNR) and its prediction target."""
    import dataclasses

    from ddpm_ref.train import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in meta["train"].items() if k in known})
    return config.make_schedule(), config.prediction


def _conditioning(model, n, out):
    """``(ε-model, labels or None)`` for n samples: class i mod K for a class-conditional model, the prompt
    naming digit i mod 10 for a prompt model (recorded in ``out["prompts"]``), None for an unconditional one."""
    import numpy as np

    from ddpm_ref.prompts import DIGIT_WORDS, PromptEps, has_prompts
    from ddpm_ref.sample import ModelEps

    if has_prompts(model.config):
        out["prompts"] = list(DIGIT_WORDS)
        return PromptEps(model, list(DIGIT_WORDS)), np.arange(n) % len(DIGIT_WORDS)
    k = model.config.get("num_classes")
    return ModelEps(model), (None if k is None else np.arange(n) % k)


def _draw(eps, sched, shape, sampler, steps, ddpm_steps, kw):
    """``(samples, the sampler's name)``: DDIM with ``steps``, Algorithm 2, or Algorithm 2 respaced to ``ddpm_steps``."""
    from ddpm_ref.sample import sample_ddim, sample_ddpm, sample_ddpm_respaced

    if sampler == "ddpm" and ddpm_steps is not None and ddpm_steps < sched.T:
        return sample_ddpm_respaced(eps, sched, shape, steps=ddpm_steps, **kw), f"ddpm{ddpm_steps}"
    if sampler == "ddpm":
        return sample_ddpm(eps, sched, shape, **kw), "ddpm"
    return sample_ddim(eps, sched, shape, steps=steps, **kw), f"ddim{steps}"


def _check(args, model, meta) -> None:
    """Checks that need the run: the model, the DDIM steps and the samples' memory."""
    from ddpm_ref.memory import check_fits, sampling_bytes
    from ddpm_ref.latent import latent_info
    from ddpm_ref.runs import check_digits_run

    latent = latent_info(args.run_dir)
    if not latent:                               # a latent run's samples are decoded to the digits
        check_digits_run(meta, args.run_dir, "evaluate")
    T = meta["train"]["T"]
    if not args.no_bpd and not latent and args.num_t > T:
        raise ValueError(f"--num-t {args.num_t} is more than the run's T={T} (timesteps per batch, 1..T)")
    if args.sampler == "ddim" and args.steps > T:
        raise ValueError(f"--steps {args.steps} is more than the run's T={T}; DDIM uses a subsequence of 1..T")
    if args.ddpm_steps is not None and args.ddpm_steps > T:
        raise ValueError(f"--ddpm-steps {args.ddpm_steps} is more than the run's T={T}")
    if args.num is not None:
        check_fits(f"-n {args.num}", sampling_bytes(args.num, (1, 8, 8)))


def run(args) -> int:
    from ddpm_ref._checks import check_positive_int
    import functools

    from ddpm_ref.checkpoint import write_json_atomic
    from ddpm_ref.latent import decode_latents, latent_info
    from ddpm_ref.preflight import check_number, check_output_file, check_seed
    from ddpm_ref.runs import load_run

    check_positive_int("--num-t", args.num_t)
    check_positive_int("--steps", args.steps)
    if args.ddpm_steps is not None:
        check_positive_int("--ddpm-steps", args.ddpm_steps)
        if args.sampler != "ddpm":
            raise ValueError("--ddpm-steps respaces DDPM; use it with --sampler ddpm (DDIM takes --steps)")
    check_seed(args.seed)
    check_number("--guidance", args.guidance)
    if args.num is not None:
        check_positive_int("--num", args.num)
        if args.num < 2:
            raise ValueError("--num must be at least 2 (the FDD fits a covariance)")
    if args.json:
        check_output_file(args.json, "--json")
    model, meta = load_run(args.run_dir)
    _check(args, model, meta)
    decode = None
    if latent_info(args.run_dir):
        decode = functools.partial(decode_latents, args.run_dir)
        if not args.no_bpd:
            print("bits/dim: not reported for a latent run (its bound is on the latents, not on the test digits' "
                  "pixels); scoring its decoded samples")
    r = evaluate_run(model, meta, num_t=args.num_t, n=args.num, sampler=args.sampler, steps=args.steps,
                     ddpm_steps=args.ddpm_steps, guidance=args.guidance, seed=args.seed,
                     bpd=not args.no_bpd and decode is None, progress=not args.no_progress, decode=decode)
    if "bpd" in r:
        print(f"bits/dim (bound, {r['n']} test digits, {r['num_t']} timesteps): {r['bpd']:.3f} ± {r['bpd_stderr']:.3f}"
              f" (an untrained model, ε̂ = 0: {r['bpd_zero_model']:.3f})")
    print(f"Fréchet digit distance, {r['n_samples']} samples ({r['sampler']}, w={r['guidance']:g}"
          f"{', decoded from latents' if r.get('decoded') else ''}): "
          f"{r['fdd_samples']:.3f}")
    print(f"  baselines at n={r['n']}: held-out digits {r['fdd_test_digits']:.3f}, uniform noise {r['fdd_noise']:.3f}")
    if "accuracy_samples" in r:
        print(f"label accuracy of the samples{' (drawn for the prompts zero ... nine)' if 'prompts' in r else ''}: "
              f"{r['accuracy_samples']:.3f} "
              f"(the classifier on held-out digits: {r['accuracy_test_digits']:.3f})")
    if args.json:
        write_json_atomic(args.json, r)
        print(f"wrote {args.json}")
    return 0
