"""ddpm_ref.checkpoint: round trip, atomic writes, and clear errors for bad files."""

import json
import os

import numpy as np
import pytest

from ddpm_ref import checkpoint as ck


def _example():
    arrays = {"param/w": np.arange(6, dtype=np.float32).reshape(2, 3), "history/loss": np.ones(4)}
    meta = {"step": 7, "rng": np.random.default_rng(5).bit_generator.state, "train": {"lr": 0.5}}
    return arrays, meta


def test_round_trip_and_rng_state(tmp_path):
    arrays, meta = _example()
    path = tmp_path / "run" / "checkpoint.npz"
    ck.save_checkpoint(str(path), arrays, meta)
    got, m = ck.load_checkpoint(str(path))
    assert set(got) == set(arrays)
    for k in arrays:
        assert got[k].dtype == arrays[k].dtype and np.array_equal(got[k], arrays[k])
    assert m["step"] == 7 and m["format"] == ck.FORMAT and m["version"] == ck.VERSION
    g = np.random.default_rng()
    g.bit_generator.state = m["rng"]                       # the JSON state restores the stream
    assert g.random() == np.random.default_rng(5).random()
    on_disk = json.loads((tmp_path / "run" / "config.json").read_text())
    # the human-readable copy: the run's description, without what changes at every step
    assert on_disk == {"format": ck.FORMAT, "version": ck.VERSION, "train": {"lr": 0.5}}


def test_write_is_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the old checkpoint untouched and no temporary file."""
    arrays, meta = _example()
    path = str(tmp_path / "checkpoint.npz")
    ck.save_checkpoint(path, arrays, meta)
    before = open(path, "rb").read()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        ck.save_checkpoint(path, {"param/w": np.zeros(9)}, {"step": 8})
    assert open(path, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz", "config.json"]


def test_uses_os_replace(tmp_path, monkeypatch):
    calls = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append((a, b)), real(a, b)))
    ck.save_checkpoint(str(tmp_path / "c.npz"), *_example())
    assert calls and os.path.dirname(calls[0][0]) == str(tmp_path)  # temp file in the same dir


def test_truncated_file(tmp_path):
    path = tmp_path / "c.npz"
    ck.save_checkpoint(str(path), *_example())
    raw = path.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 10, 10, 0):
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="checkpoint"):
            ck.load_checkpoint(str(path))


def test_foreign_and_pickled_and_versioned_files(tmp_path):
    p = tmp_path / "foreign.npz"
    np.savez(p, x=np.zeros(3))
    with pytest.raises(ValueError, match="did not write"):
        ck.load_checkpoint(str(p))
    # an object array would need pickle: refused (allow_pickle=False), with a clear message
    np.savez(p, x=np.array([{"evil": 1}], dtype=object), __ddpm_ref__=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="pickle"):
        ck.load_checkpoint(str(p))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not an .npz"):
        ck.load_checkpoint(str(tmp_path / "text.npz"))
    np.savez(p, __ddpm_ref__=np.frombuffer(b"{not json", dtype=np.uint8))
    with pytest.raises(ValueError, match="JSON"):
        ck.load_checkpoint(str(p))
    blob = json.dumps({"format": ck.FORMAT, "version": 999}).encode()
    np.savez(p, __ddpm_ref__=np.frombuffer(blob, dtype=np.uint8))
    with pytest.raises(ValueError, match="version 999"):
        ck.load_checkpoint(str(p))
    with pytest.raises(ValueError, match="no checkpoint"):
        ck.load_checkpoint(str(tmp_path / "missing.npz"))


def test_refuses_object_arrays_on_save(tmp_path):
    with pytest.raises(ValueError, match="numeric"):
        ck.save_checkpoint(str(tmp_path / "c.npz"), {"x": np.array([None])}, {})
