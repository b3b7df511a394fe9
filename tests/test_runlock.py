"""ddpm_ref.runlock and the run-directory rules of ``train``: one writer, stale locks, temporaries,
resume semantics, and what config.json holds."""

import dataclasses
import json
import os
import signal
import socket
import time

import pytest

from ddpm_ref import train as tr
from ddpm_ref.checkpoint import FORMAT
from ddpm_ref.cli import main
from ddpm_ref.runlock import LOCK_NAME, RunLock, check_run_dir

MOONS = tr.TrainConfig(data="moons", steps=4, batch_size=16, warmup=2, T=20, n_points=100, checkpoint_every=0,
                       cond=False)
TINY_CLI = ["train", "--data", "moons", "--n-points", "100", "--batch-size", "16", "--T", "20", "--no-progress"]


def _mlp():
    return "mlp", dict(dim=2, hidden=16, depth=2, emb_dim=8, num_classes=None, dtype="float32", seed=0)


def _write_lock(run_dir, **info):
    run_dir.mkdir(exist_ok=True)
    (run_dir / LOCK_NAME).write_text(json.dumps(info))


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(str(tmp_path)):
        held = json.loads((tmp_path / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(ValueError, match=f"in use by another training run \\(pid {os.getpid()}"):
            RunLock(str(tmp_path)).acquire()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_process_and_another_hosts_lock_are_refused(tmp_path):
    _write_lock(tmp_path, pid=os.getppid(), host=socket.gethostname())          # our parent: alive
    with pytest.raises(ValueError, match="delete .*\\.lock"):
        RunLock(str(tmp_path)).acquire()
    _write_lock(tmp_path, pid=999999999, host="elsewhere.example")           # cannot be checked from here
    with pytest.raises(ValueError, match="on elsewhere.example"):
        RunLock(str(tmp_path)).acquire()


def test_a_stale_lock_is_taken_over_with_a_message(tmp_path):
    _write_lock(tmp_path, pid=999999999, host=socket.gethostname())         # no such process
    said = []
    with RunLock(str(tmp_path), message=said.append):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert len(said) == 1 and "took over the lock" in said[0] and "999999999" in said[0]


def test_an_unreadable_lock_is_stale_only_when_old(tmp_path):
    (tmp_path / LOCK_NAME).write_text("")                 # a writer between create and write...
    with pytest.raises(ValueError):
        RunLock(str(tmp_path)).acquire()
    old = time.time() - 60                                # ...or one that died there a minute ago
    os.utime(tmp_path / LOCK_NAME, (old, old))
    with RunLock(str(tmp_path), message=lambda m: None):
        pass


def test_run_dir_rules(tmp_path):
    with pytest.raises(ValueError, match="ends in .npz"):
        check_run_dir(str(tmp_path / "x.npz"))
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        check_run_dir(str(tmp_path / "f"))
    with pytest.raises(ValueError, match="cannot be created"):
        check_run_dir(str(tmp_path / "f" / "run"))
    assert check_run_dir(str(tmp_path / "new" / "run")) and (tmp_path / "new" / "run").is_dir()


def test_train_removes_stale_temporaries_and_writes_a_static_config_json(tmp_path, capsys):
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / ".tmp-checkpoint.npz-abc123"
    stale.write_bytes(b"half a checkpoint")
    tr.train(MOONS, str(tmp_path), model_kind_config=_mlp(), progress=False)
    assert not stale.exists() and "removed 1 temporary file" in capsys.readouterr().out
    described = json.loads((tmp_path / "config.json").read_text())
    assert set(described) == {"format", "version", "model", "train"} and described["format"] == FORMAT
    assert described["train"]["steps"] == 4                 # no "step": it cannot fall behind the .npz


def test_a_directory_holding_a_run_needs_resume_or_overwrite(tmp_path):
    tr.train(MOONS, str(tmp_path), model_kind_config=_mlp(), progress=False)
    with pytest.raises(ValueError, match="already holds a run"):
        tr.train(MOONS, str(tmp_path), model_kind_config=_mlp(), progress=False)
    state = tr.train(dataclasses.replace(MOONS, steps=2), str(tmp_path), overwrite=True,
                     model_kind_config=_mlp(), progress=False)
    assert state.step == 2 and tr.load_state(str(tmp_path))[0].step == 2


def test_resume_continues_the_saved_total_and_prints_what_changes(tmp_path, capsys, monkeypatch):
    run = str(tmp_path / "run")
    real_step = tr.train_step

    def stop_after_step_3(state, *args, **kwargs):
        loss = real_step(state, *args, **kwargs)
        if state.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(tr, "train_step", stop_after_step_3)
    assert main([*TINY_CLI, "--steps", "6", "--run-dir", run]) == 143
    monkeypatch.setattr(tr, "train_step", real_step)
    assert "SIGTERM: stopped after step 3" in capsys.readouterr().err
    assert main(["train", "--resume", "--run-dir", run, "--no-progress"]) == 0      # no --steps
    state, config = tr.load_state(run)
    assert state.step == 6 and config.steps == 6                                   # the saved total
    assert "resuming with" not in capsys.readouterr().out
    assert main(["train", "--resume", "--run-dir", run, "--steps", "8", "--lr", "0.0005", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "--steps 8 (the saved run had 6)" in out and "--lr 0.0005 (the saved run had 0.001)" in out
    state, config = tr.load_state(run)
    assert state.step == 8 and config.lr == 0.0005 and config.batch_size == 16
