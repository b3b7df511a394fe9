r"""Latent against pixel diffusion at matched quality: the training time each needs to reach an FDD.

Lesson 17 compares a latent and a pixel U-Net at equal training *steps*; this benchmark compares them
at equal *quality*. In one run, side by side:

1. the KL autoencoder is trained as ``ddpm-ref train-autoencoder`` trains it
   (``ddpm_ref.train_extra.train_autoencoder``: 8×8 → 2×4×4, w = 1e-4, EMA, scale factor fitted on
   the training digits); its reconstructions of the held-out digits are what a perfect latent model
   would give (decoded real latents), the reference for the latent samples (their FDD and label
   accuracy are printed; an FDD is a distance between distributions, so this is a reference, not a
   hard bound);
2. two U-Nets of the demo's architecture (``DEMO_MODEL``, class-conditional with 10 % label dropout,
   ``DEMO_CONFIG``'s optimiser, warm-up and EMA) are trained from scratch, one on the pixels, one on
   the latents — what ``ddpm-ref train`` and ``ddpm-ref train --latent`` build. They train in
   alternating chunks of ``eval_every`` steps, so that both see the same machine load;
3. after every chunk each model's EMA weights draw ``samples`` digits (class-balanced labels, DDIM,
   η = 0, guidance w; the latent ones decoded), scored by the project's digit classifier: FDD to the
   training digits and label accuracy. The default sample count is the number of held-out digits, so
   the floors of step 1 are at the same sample size. Each FDD comes with a bootstrap standard error
   (``fdd_bootstrap_se``: 100 resamples of the samples); two independent FDDs with standard errors σ
   differ beyond noise when they are more than about 2√2·σ apart.

The report gives, for each FDD target, the training CPU time (and steps) at the first checkpoint where
each model's FDD is at or below it, and the ratio pixel / latent, with and without the autoencoder's
training time; a target below the reconstructions' FDD is marked as below what a perfect latent model scores.
Times are CPU seconds of this process (``time.process_time``, all threads), which a busy machine
disturbs less than wall time (both are recorded). Sampling time and parameter counts close the table.

    python -m ddpm_ref.bench.latent_vs_pixel                      # 2000 steps each, a check every 250
    python -m ddpm_ref.bench.latent_vs_pixel --steps 300 --eval-every 100 --samples 50 --ae-steps 100
    python -m ddpm_ref.bench.latent_vs_pixel --steps 2500 --eval-every 250 --json figures/latent_vs_pixel.json   # the committed run

Layer: tooling beside the stack (it trains through the loop layer and scores with ``evaluation``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import tempfile
import time

import numpy as np
from tqdm import tqdm

from ddpm_ref._checks import check_positive_int
from ddpm_ref.bench.committed_run import run_and_report

__all__ = ["FDD_TARGETS", "run_latent_vs_pixel", "time_to_target", "fdd_bootstrap_se", "format_report", "main"]

FDD_TARGETS = (2.0, 1.0, 0.6, 0.5, 0.45, 0.4, 0.375, 0.35, 0.325)


def time_to_target(checkpoints, target: float):
    """``(steps, cpu_seconds)`` of the first checkpoint whose FDD is at or below ``target``, or ``(None, None)``.

    ``checkpoints``: a list of dicts with "step", "train_cpu" and "fdd", in training order.
    """
    for c in checkpoints:
        if c["fdd"] <= target:
            return c["step"], c["train_cpu"]
    return None, None


def fdd_bootstrap_se(images, n_boot: int = 100, seed: int = 0) -> float:
    """The standard error of ``fdd(images)`` by a bootstrap over the images (n_boot resamples with replacement)."""
    from ddpm_ref.evaluation.classifier import digit_classifier
    from ddpm_ref.evaluation.metrics import _reference_stats, frechet_distance

    f, ref, g = digit_classifier().features(np.clip(images, -1, 1)), _reference_stats(), np.random.default_rng(seed)
    reps = []
    for _ in range(n_boot):
        fi = f[g.integers(0, len(f), len(f))]
        reps.append(frechet_distance(fi.mean(axis=0), np.cov(fi, rowvar=False), *ref))
    return float(np.std(reps, ddof=1))


def _sample_scores(net, ema_params, sched, n, ddim_steps, guidance, seed, decode):
    """Sample with the EMA weights; returns (fdd, its bootstrap s.e., label accuracy, sampling CPU s, wall s)."""
    from ddpm_ref.evaluation.metrics import fdd, label_accuracy
    from ddpm_ref.runs import build_model
    from ddpm_ref.sample import ModelEps, sample_ddim

    model = build_model("unet", net.config)
    model.params = {k: v.copy() for k, v in ema_params.items()}
    model.workers = net.workers
    labels = np.arange(n) % 10
    cpu, wall = time.process_time(), time.perf_counter()
    shape = (n, net.config["in_channels"], net.config["image_size"], net.config["image_size"])
    x = decode(sample_ddim(ModelEps(model), sched, shape, steps=ddim_steps, rng=seed, y=labels, guidance=guidance,
                           progress=False))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return fdd(x), fdd_bootstrap_se(x, seed=seed), label_accuracy(x, labels), cpu, wall


def _check(steps, eval_every, samples, ddim_steps, ae_steps, guidance, threads):
    for name, value in (("steps", steps), ("eval_every", eval_every), ("ddim_steps", ddim_steps),
                        ("ae_steps", ae_steps), ("threads", threads)):
        check_positive_int(name, value)
    if samples is not None and check_positive_int("samples", samples) < 20:
        raise ValueError(f"samples must be at least 20 (two per class, for an FDD), got {samples}")
    if eval_every > steps:
        raise ValueError(f"eval_every ({eval_every}) must be at most steps ({steps})")
    if not np.isfinite(guidance):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")


def run_latent_vs_pixel(steps: int = 2000, eval_every: int = 250, samples: int | None = None, ddim_steps: int = 25,
                        ae_steps: int = 1500, guidance: float = 0.0, targets=FDD_TARGETS, seed: int = 0,
                        threads: int = 2, progress: bool = True) -> dict:
    """Run the benchmark (module docstring); returns a JSON-ready dict for ``format_report``."""
    from ddpm_ref.bench.timing import limit_threads
    from ddpm_ref.data.digits import load_digits_images
    from ddpm_ref.train import DEMO_CONFIG, DEMO_MODEL

    _check(steps, eval_every, samples, ddim_steps, ae_steps, guidance, threads)
    limit_threads(threads)
    x_test, y_test = load_digits_images("test", seed=seed)
    samples = len(x_test) if samples is None else samples
    train_keys = ("batch_size", "lr", "warmup", "ema_decay", "p_uncond", "grad_clip")
    res = {"settings": {"steps": steps, "eval_every": eval_every, "samples": samples, "ddim_steps": ddim_steps,
                        "eta": 0.0, "guidance": guidance, "ae_steps": ae_steps, "seed": seed, "threads": threads,
                        "model": dict(DEMO_MODEL),
                        "train": {k: v for k, v in dataclasses.asdict(DEMO_CONFIG).items() if k in train_keys}},
           "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                       "numpy": np.__version__, "loadavg_start": list(os.getloadavg())},
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "targets": [float(t) for t in targets]}
    ae, scale = _autoencoder_and_floors(res, x_test[:samples], y_test[:samples], ae_steps, seed, progress)   # 1.
    res["runs"] = _train_side_by_side(ae, scale, res["settings"], progress)                                # 2., 3.
    res["machine"]["loadavg_end"] = list(os.getloadavg())
    return res


def _autoencoder_and_floors(res, x_test, y_test, ae_steps, seed, progress):
    """Step 1: train the autoencoder (timed), and score the held-out digits and their reconstructions into ``res``."""
    from ddpm_ref.evaluation.metrics import fdd, label_accuracy
    from ddpm_ref.train_extra import train_autoencoder

    cpu, wall = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ae, scale, mse, _ = train_autoencoder(tmp, steps=ae_steps, seed=seed, checkpoint_every=0, progress=progress)
    ae_cpu, ae_wall = time.process_time() - cpu, time.perf_counter() - wall
    recon = ae.decode(ae.encode(x_test, scale), scale)
    res["autoencoder"] = {"train_cpu": ae_cpu, "train_wall": ae_wall, "scale_factor": scale, "test_mse": mse,
                          "params": int(sum(p.size for p in ae.params.values())),
                          "recon_fdd": fdd(recon), "recon_fdd_se": fdd_bootstrap_se(recon, seed=seed),
                          "recon_accuracy": label_accuracy(recon, y_test)}
    res["test_digits"] = {"n": int(len(x_test)), "fdd": fdd(x_test), "fdd_se": fdd_bootstrap_se(x_test, seed=seed),
                          "accuracy": label_accuracy(x_test, y_test)}
    return ae, scale


def _train_side_by_side(ae, scale, st, progress):
    """Steps 2 and 3: the pixel and the latent U-Net in alternating chunks, each scored after every chunk."""
    from ddpm_ref.data import load_dataset
    from ddpm_ref.latent import latent_dataset
    from ddpm_ref.runs import build_model
    from ddpm_ref.train import DEMO_CONFIG, default_model_config, new_state, train_step

    steps, every, seed = st["steps"], st["eval_every"], st["seed"]
    sched = DEMO_CONFIG.make_schedule()
    config = dataclasses.replace(DEMO_CONFIG, steps=steps, seed=seed)
    datasets = {"pixel": load_dataset("digits", seed=seed), "latent": latent_dataset(ae, scale, seed=seed)}
    decoders = {"pixel": lambda x: x, "latent": lambda z: ae.decode(z.astype(np.float32), scale)}
    states, runs = {}, {}
    for name, data in datasets.items():
        net = build_model(*default_model_config(data, True, seed))
        net.workers = st["threads"]
        states[name] = new_state(net, config)
        runs[name] = {"params": int(net.num_params), "input_shape": list(data.x.shape[1:]), "checkpoints": [],
                      "train_cpu": 0.0, "train_wall": 0.0}
    bar = tqdm(total=2 * steps, desc="training pixel and latent U-Nets", unit="step", disable=not progress)
    for chunk_end in [*range(every, steps, every), steps]:
        for name, state in states.items():
            run, cpu, wall = runs[name], time.process_time(), time.perf_counter()
            while state.step < chunk_end:
                loss = train_step(state, datasets[name], sched, config)
                bar.update(1)
            run["train_cpu"] += time.process_time() - cpu
            run["train_wall"] += time.perf_counter() - wall
            f, f_se, acc, s_cpu, s_wall = _sample_scores(state.model, state.ema.params, sched, st["samples"],
                                                         st["ddim_steps"], st["guidance"], seed, decoders[name])
            run["checkpoints"].append({"step": state.step, "train_cpu": run["train_cpu"], "train_wall": run["train_wall"],
                                       "loss": float(np.mean(state.losses[-50:])), "fdd": f, "fdd_se": f_se,
                                       "accuracy": acc, "sample_cpu": s_cpu, "sample_wall": s_wall})
            bar.set_postfix_str(f"{name} step {state.step}: FDD {f:.2f}, loss {loss:.3f}")
    bar.close()
    return runs


def format_report(res: dict) -> str:
    """The printed tables: the floors, FDD along training, time to each FDD target, sampling and parameters."""
    st, ae, runs = res["settings"], res["autoencoder"], res["runs"]
    px, lt = runs["pixel"], runs["latent"]
    out = [f"latent vs pixel diffusion on the 8x8 digits, {res['date']}, {res['machine']['platform']}, "
           f"{res['machine']['cpus']} CPUs, {st['threads']} threads; load average "
           f"{res['machine']['loadavg_start'][0]:.1f} at the start, {res['machine']['loadavg_end'][0]:.1f} at the end",
           f"U-Nets: the demo's architecture, {st['steps']} steps each at batch {st['train']['batch_size']}; "
           f"scored every {st['eval_every']} steps on {st['samples']} samples (DDIM {st['ddim_steps']} steps, "
           f"eta = 0, w = {st['guidance']:g}, EMA weights)",
           *([f"command: {res['command']}"] if "command" in res else []),
           "",
           f"floors at n = {res['test_digits']['n']}: held-out digits FDD {res['test_digits']['fdd']:.3f} "
           f"± {res['test_digits']['fdd_se']:.3f} "
           f"(accuracy {res['test_digits']['accuracy']:.3f}); their autoencoder reconstructions FDD "
           f"{ae['recon_fdd']:.3f} ± {ae['recon_fdd_se']:.3f} (accuracy {ae['recon_accuracy']:.3f}, test MSE {ae['test_mse']:.4f})",
           f"autoencoder: {ae['params']:,} parameters, {st['ae_steps']} steps, {ae['train_cpu']:.0f} s CPU "
           f"({ae['train_wall']:.0f} s wall), scale factor {ae['scale_factor']:.4f}",
           "",
           "(± = bootstrap standard error over the samples)",
           f"{'step':>6} | {'pixel CPU s':>11} {'FDD':>15} {'acc':>6} | {'latent CPU s':>12} {'FDD':>15} {'acc':>6}"]
    for a, b in zip(px["checkpoints"], lt["checkpoints"]):
        out.append(f"{a['step']:6d} | {a['train_cpu']:11.0f} {a['fdd']:7.3f} ± {a['fdd_se']:.3f} {a['accuracy']:6.3f} | "
                   f"{b['train_cpu']:12.0f} {b['fdd']:7.3f} ± {b['fdd_se']:.3f} {b['accuracy']:6.3f}")
    out += ["", "training CPU time to first reach an FDD target (at the checkpoints above, whose FDDs carry the ± printed there):",
            f"{'FDD <=':>7} | {'pixel steps':>11} {'CPU s':>7} | {'latent steps':>12} {'CPU s':>7} {'+AE CPU s':>10} | "
            f"{'pixel/latent':>12} {'(with AE)':>10}"]
    for target in res["targets"]:
        ps, pc = time_to_target(px["checkpoints"], target)
        ls, lc = time_to_target(lt["checkpoints"], target)
        if target < ae["recon_fdd"]:
            latent = f"{'below a perfect latent model (' + format(ae['recon_fdd'], '.2f') + ')':>33}"
        elif ls is None:
            latent = f"{'not reached':>12} {'':>7} {'':>10}"      # within the steps run
        else:
            latent = f"{ls:12d} {lc:7.0f} {lc + ae['train_cpu']:10.0f}"
        pixel = f"{ps:11d} {pc:7.0f}" if ps is not None else f"{'not reached':>11} {'':>7}"
        ratio = (f"{pc / lc:12.2f} {pc / (lc + ae['train_cpu']):10.2f}"
                 if ps is not None and ls is not None and target >= ae["recon_fdd"] else "")
        out.append(f"{target:7.3f} | {pixel} | {latent} | {ratio}")
    last_p, last_l = px["checkpoints"][-1], lt["checkpoints"][-1]
    n = st["samples"]
    out += ["", f"{'':8}{'parameters':>11} {'input':>9} {'CPU ms / train step':>20} {'sampling CPU s':>15} "
                f"(for {n} samples, {st['ddim_steps']} steps; latent: decoding included)"]
    for name, r, last in (("pixel", px, last_p), ("latent", lt, last_l)):
        shape = "x".join(map(str, r["input_shape"]))
        out.append(f"{name:8}{r['params']:11,d} {shape:>9} {1000 * r['train_cpu'] / last['step']:20.1f} "
                   f"{last['sample_cpu']:15.1f}")
    out.append(f"{'ratio':8}{px['params'] / lt['params']:11.2f} {'':>9} "
               f"{(px['train_cpu'] / last_p['step']) / (lt['train_cpu'] / last_l['step']):20.2f} "
               f"{last_p['sample_cpu'] / last_l['sample_cpu']:15.2f}   (pixel / latent)")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm_ref.bench.latent_vs_pixel", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="training steps of each U-Net (default: 2000)")
    p.add_argument("--eval-every", type=int, default=250, help="score both models every this many steps (default: 250)")
    p.add_argument("--samples", type=int, default=None, help="samples per score (default: the held-out digits' count)")
    p.add_argument("--ddim-steps", type=int, default=25, help="DDIM steps when scoring (default: 25)")
    p.add_argument("--ae-steps", type=int, default=1500, help="autoencoder training steps (default: 1500)")
    p.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance w when scoring (default: 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="BLAS threads and U-Net workers (default: 2)")
    p.add_argument("--json", metavar="PATH", help="also write the results (with the command) as JSON")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    return run_and_report("ddpm_ref.bench.latent_vs_pixel", argv, args.json, report=format_report,
                          run=lambda: run_latent_vs_pixel(args.steps, args.eval_every, args.samples, args.ddim_steps,
                                                          args.ae_steps, args.guidance, seed=args.seed,
                                                          threads=args.threads, progress=not args.no_progress))

if __name__ == "__main__":
    sys.exit(main())
