"""Checkpoints: one ``.npz`` of arrays plus a JSON description, written atomically, read safely.

Layer: loop (imports the model, layers and math; never the command line).

A checkpoint file ``checkpoint.npz`` holds

* arrays, by prefix: ``param/<name>`` (the weights), ``ema/<name>`` (their moving average),
  ``adam_m/<name>`` and ``adam_v/<name>`` (Adam's moments), ``history/<name>`` (e.g. the loss of
  every step, for the loss curve);
* one more entry, ``__ddpm_ref__``: the JSON description as UTF-8 bytes (a uint8 array), with
  the format name and version, the model's kind and config, the training config, the step, the
  Adam and EMA state, and the random generator's state (``bit_generator.state``, which is plain
  JSON: PCG64's 128-bit integers are JSON integers).

The run's description is written beside it as ``config.json`` for people to read: the same JSON
without the entries that change at every step (``step``, ``adam``, ``ema``, ``rng``; see
``STEP_KEYS``), so it cannot fall behind the ``.npz``. Loading reads only the copy inside the
``.npz``.

Safety:

* **No pickle.** Every array is a plain numeric array and loading passes ``allow_pickle=False``,
  so opening a checkpoint cannot run code.
* **Atomic writes** (``write_atomic``, also used for sample ``.npz`` files, PNG grids and JSON
  results). The file is written to a temporary file in the same directory, flushed and
  ``fsync``-ed, then ``os.replace``-d over the old one (a rename, atomic on POSIX and Windows).
  A crash, a full disk or Ctrl-C mid-write leaves the previous file intact, never a half file;
  the temporary file is removed (after ``kill -9`` it stays, and the next training run in that
  directory removes it: ``ddpm_ref.runlock.remove_stale_temporaries``).
* **Clear errors.** A truncated, foreign (another program's ``.npz``) or wrong-version file raises
  ``ValueError`` saying which, instead of a traceback from deep inside NumPy or zipfile.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib

import numpy as np

__all__ = ["FORMAT", "VERSION", "STEP_KEYS", "save_checkpoint", "load_checkpoint", "write_atomic", "write_json_atomic",
           "save_npz_atomic", "split_prefix"]

FORMAT = "ddpm_ref.checkpoint"
VERSION = 1
META_KEY = "__ddpm_ref__"
#: Entries of a checkpoint's description that change at every step: kept out of ``config.json``.
STEP_KEYS = ("step", "adam", "ema", "rng")


def _host(a) -> np.ndarray:
    """A NumPy copy-free view of a NumPy array, or the host copy of a CuPy array."""
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "get"):            # cupy.ndarray
        return a.get()
    return np.asarray(a)


def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str, write) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync, then rename it over.

    On any error (a full disk included) or interrupt the temporary file is removed and ``path`` is
    left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=directory)
    try:
        os.chmod(tmp, 0o644)            # mkstemp makes 0600; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.errno is not None and not err.filename:
            raise type(err)(err.errno, err.strerror, path) from None   # say which file (a full disk)
        raise
    _fsync_dir(directory)


def write_json_atomic(path: str, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))


def save_npz_atomic(path: str, **arrays) -> str:
    """``numpy.savez(path, **arrays)``, atomically (never a truncated file); returns the path."""
    write_atomic(path, lambda f: np.savez(f, **arrays))
    return path


def save_checkpoint(path: str, arrays: dict, meta: dict, *, json_path: str | None = None) -> None:
    """Write ``arrays`` (name → numeric array) and ``meta`` (JSON-able dict) to ``path`` atomically.

    ``meta`` gets ``format`` and ``version`` added. Arrays must be numeric (no object arrays: they
    would need pickle). ``json_path`` (default: ``config.json`` beside ``path``) receives the
    description without ``STEP_KEYS``, for people to read; pass ``""`` to skip it.
    """
    full_meta = {"format": FORMAT, "version": VERSION, **meta}
    blob = np.frombuffer(json.dumps(full_meta).encode("utf-8"), dtype=np.uint8)
    host = {}
    for name, a in arrays.items():
        if name == META_KEY:
            raise ValueError(f"the array name {META_KEY!r} is reserved")
        h = _host(a)
        if h.dtype == object:
            raise ValueError(f"array {name!r} has dtype object; checkpoints hold numeric arrays only")
        host[name] = h
    host[META_KEY] = blob
    write_atomic(path, lambda f: np.savez(f, **host))
    if json_path is None:
        json_path = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    if json_path:
        write_json_atomic(json_path, {k: v for k, v in full_meta.items() if k not in STEP_KEYS})


def load_checkpoint(path: str):
    """Read a checkpoint: ``(arrays, meta)``, arrays a dict of NumPy arrays, meta the JSON dict.

    Raises ValueError (never a NumPy/zipfile traceback) when the file is missing, truncated or
    corrupt, is an ``.npz`` that ddpm_ref did not write, or has another format version.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"no checkpoint at {path!r} (train one with `ddpm-ref train --out DIR`)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":   # every .npz is a zip archive, which starts with these bytes
        what = "an empty file" if not magic else "not an .npz (zip) file"
        raise ValueError(f"{path!r} is not a ddpm_ref checkpoint: {what}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if META_KEY not in f.files:
                raise ValueError(f"{path!r} is an .npz file that ddpm_ref did not write "
                                 f"(no {META_KEY!r} entry; it holds {', '.join(f.files[:5]) or 'nothing'})")
            arrays = {name: f[name] for name in f.files}   # reads (and CRC-checks) every member
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path!r} is not a readable checkpoint: the file is truncated or corrupt "
                         f"({type(err).__name__}: {err})") from None
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise ValueError(f"{path!r} holds pickled objects; ddpm_ref checkpoints never do, "
                             "so it was not written by ddpm_ref (refusing to unpickle)") from None
        if str(err).startswith(repr(path)):
            raise
        raise ValueError(f"{path!r} is not a readable checkpoint ({err})") from None
    blob = arrays.pop(META_KEY)
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path!r}: the checkpoint's description is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a {FORMAT} file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path!r} has checkpoint format version {meta.get('version')!r}; "
                         f"this ddpm_ref reads version {VERSION}")
    return arrays, meta


def split_prefix(arrays: dict, prefix: str) -> dict:
    """``{name: a}`` for every ``prefix/name`` key of ``arrays``."""
    p = prefix + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}
