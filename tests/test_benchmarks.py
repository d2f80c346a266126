"""The benchmark scripts run end to end (GPU script in its CPU smoke mode), and the guard flags
ratios that fell. No timing is asserted here: speed lives in ``benchmarks/``."""

from __future__ import annotations

import json

from benchmarks import check, gpu
from benchmarks.timing import Measurement, ratio


def test_gpu_benchmark_smoke_runs_mmembed_and_open_clip_on_files(tmp_path, one_torch_thread):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--smoke", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    names = [r["name"] for r in rows]
    assert names == [
        "open_clip DataLoader + encode_image, bf16 autocast",
        "mmembed encode(paths), bf16",
        "mmembed encode(paths), bf16, PIL preprocess in workers",
        "mmembed encode(paths), bf16, two model copies, one device",
        "open_clip encode_image, bf16 autocast",
        "mmembed image tower, bf16",
    ]
    for r in rows:
        assert r["images_per_s"] > 0 and r["peak_mb"] > 0
        assert r["cosine_to_fp32"] >= 0.999  # bf16 against open_clip fp32 on the same files
    # ViT-B/32 at 224 px: 8.8 GFLOP per image with attention (open_clip lists 4.4 GMACs).
    assert 8.7 < rows[0]["gflop_per_image"] < 8.9


def rows(**ratios):
    return [{"suite": "s", "name": name, "ratio": value} for name, value in ratios.items()]


def test_check_flags_only_ratios_that_fell_more_than_15_percent():
    committed = rows(a=2.0, b=1.0, c=1.0) + [{"suite": "s", "name": "d", "items_per_s": 5.0}]
    measured = rows(a=1.6, b=0.9, c=1.5, e=0.1) + [{"suite": "s", "name": "d", "items_per_s": 1.0}]
    changes = {c.key: c for c in check.compare(committed, measured)}
    assert sorted(changes) == ["s | a | ratio", "s | b | ratio", "s | c | ratio"]
    assert [k for k, c in changes.items() if c.regressed] == ["s | a | ratio"]
    assert "FELL" in check.format_changes(list(changes.values()))


def test_ratio_is_the_median_of_side_by_side_rounds():
    # Round 2 ran under a burst of load that hit both sides: it does not move the ratio.
    ours = Measurement("ours", 10, 1.0, 10.0, 0.0, [1.0, 4.0, 1.0])
    reference = Measurement("reference", 10, 2.0, 5.0, 0.0, [2.0, 8.0, 2.0])
    assert ratio(ours, reference) == 2.0
    assert ratio(Measurement("x", 10, 1.0, 10.0, 0.0), reference) == 2.0  # untimed in turns


def test_serve_embed_benchmark_smoke_runs_each_server(tmp_path):
    from benchmarks import serve_embed

    out = tmp_path / "serve_embed.json"
    assert serve_embed.main(["--smoke", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert set(payload["results"]) == {"batched", "batched, wait 5 ms", "unbatched"}
    for mode in payload["results"].values():
        for workload in ("text", "image"):
            for row in mode[workload].values():
                assert row["requests"] == 8 and row["errors"] == 0 and row["requests_per_s"] > 0
    for costs in payload["encode_ms_per_item_by_batch"].values():
        assert set(costs) == {"1", "2"} and min(costs.values()) > 0
    assert len(payload["load_average_before"]) == 3 and payload["machine"] in {
        "busy (load above the core count)",
        "quiet",
    }


def test_load_monitor_counts_other_programs_not_the_benchmark(tmp_path):
    """Spinning processes are other load (busy); the benchmark's own threads are not."""
    import os
    import subprocess
    import sys
    import threading
    import time

    from benchmarks.load import LoadMonitor, runnable_own

    cores = os.cpu_count() or 1
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores)]
    try:
        time.sleep(0.5)  # started and spinning
        with LoadMonitor() as monitor:
            time.sleep(1.5)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    summary = monitor.summary()
    assert summary["busy"] and summary["others_per_core"] >= 0.9
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    spinning = threading.Thread(target=spin)
    spinning.start()
    try:
        seen = max(runnable_own() for _ in range(50))  # the spinning thread is ours
    finally:
        stop.set()
        spinning.join()
    assert seen >= 1


def test_thread_sweep_children_get_the_run_less_its_output_options():
    from benchmarks.__main__ import _without

    argv = ["--suites", "minilm", "image", "--threads", "1,4", "--out", "x.json", "--repeats", "5"]
    options = ("--threads", "--out", "--check", "--baseline", "--suites", "--sweep-suites")
    assert _without(argv + ["--check"], options) == ["--repeats", "5"]
    assert _without(["--out=x.json", "--texts", "8"], options) == ["--texts", "8"]


def test_tables_state_threads_and_load(tmp_path):
    from benchmarks.tables import table

    rows = [
        {"suite": "s", "name": "ref", "items_per_s": 10.0, "threads": 1, "others_per_core": 0.1},
        {
            "suite": "s",
            "name": "ours",
            "items_per_s": 20.0,
            "ratio": 2.0,
            "reference": "ref",
            "threads": 2,
            "others_per_core": 0.7,
            "busy": True,
            "recall_at_1_change": -0.01,
        },
    ]
    lines = table(rows, default_threads=2).splitlines()
    assert lines[0].startswith("| run | threads | load/core | items/s | ratio | vs |")
    assert lines[2].startswith("| ours | 2 | 0.70 busy | 20.0 | 2.00x | ref | -0.0100 |")
    assert lines[3].startswith("| ref | 1 | 0.10 | 10.0 |")


def test_a_suite_child_that_crashes_costs_its_rows_only(tmp_path, monkeypatch):
    """Each suite runs in a child process; one killed by SIGSEGV (as the whole run once was,
    exit 139) is named, and the next suite still runs."""
    import sys

    from benchmarks.__main__ import run_child

    child = tmp_path / "child"
    child.write_text(
        "#!/bin/sh\n"
        'case "$*" in *crash*) kill -SEGV $$ ;; esac\n'
        'out=$(echo "$*" | sed "s/.*--out //")\n'
        'echo \'{"rows": [{"suite": "ok"}]}\' > "$out"\n'
    )
    child.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(child))
    rows, failure = run_child("crash", ["--repeats", "5"], threads=1)
    assert rows == [] and failure == "suite 'crash' at 1 threads: child killed by SIGSEGV, no rows"
    rows, failure = run_child("minilm", ["--repeats", "5"], threads=None)
    assert rows == [{"suite": "ok"}] and failure is None


def test_merge_keeps_the_suites_a_run_did_not_measure():
    from benchmarks.__main__ import merged

    old = {"args": {"threads": "1"}, "rows": [{"suite": "a", "v": 1}, {"suite": "b", "v": 1}]}
    new = {"args": {}, "rows": [{"suite": "a", "v": 2}]}
    out = merged(old, new)
    assert out["rows"] == [{"suite": "a", "v": 2}, {"suite": "b", "v": 1}]
    assert out["kept"] == {"suites": ["b"], "from": {"args": {"threads": "1"}}}
