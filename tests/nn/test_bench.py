"""``ddpm-ref bench`` runs end to end (tiny settings) and rejects bad arguments with status 2."""

import json

from ddpm_ref.cli import main


def test_bench_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--batch", "2", "--repeats", "1", "--warmup", "0", "--no-layers",
                 "--profile", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "training step" in text and "sampling forward" in text and "conv2d_backward" in text
    res = json.loads(out.read_text())
    assert res["batch"] == 2 and len(res["rows"]) == 4
    if res["torch"]:
        assert res["identical"]["ok"] and "ratio" in res["rows"][0]


def test_bench_bad_arguments(capsys):
    assert main(["bench", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert main(["bench", "--warmup", "-1"]) == 2
