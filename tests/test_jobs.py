"""A failed run ends with one line per failed job naming its error, not only Snakemake's sentence."""

from __future__ import annotations

from workflow_helpers import run_snakemake, write_config

from llmscape.jobs import failures


def test_failures_reads_snakemake_blocks_and_job_logs(tmp_path):
    job_log = tmp_path / "job.log"
    job_log.write_text(
        "12:00:00 INFO start\nTraceback (most recent call last):\n  File x\nKeyError: 'w'\n"
        "12:00:01 ERROR KeyError: 'w'\n"
    )
    llm_log = tmp_path / "other.log"
    llm_log.write_text("12:00:00 ERROR engine.memory_mb=1 is too small to stream this model\n")
    main = tmp_path / "snakemake.log"
    main.write_text(
        "Error in rule surface:\n    jobid: 3\n    output: a.h5\n"
        f"    log: {job_log} (check log file(s) for error details)\n"
        f"Error in rule directions:\n    jobid: 4\n    log: {llm_log}\nError in rule merge:\n    jobid: 5\n"
    )
    assert failures([main]) == [
        f"llmscape: job surface failed: KeyError: 'w' (log: {job_log})",
        f"llmscape: job directions failed: engine.memory_mb=1 is too small to stream this model (log: {llm_log})",
        "llmscape: job merge failed: no log",
    ]


def test_a_failing_job_is_named_on_the_last_line(tmp_path):
    model = tmp_path / "broken"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"not safetensors")
    (model / "config.json").write_text("{}")
    study = {"tensors": ["mlp"], "directions": {"r": {}}, "layers": ["first"], "grid": {"dims": 1, "points": 3}}
    write_config(tmp_path, {"model": {"name": "broken", "source": str(model)}, "studies": {"s": study}})
    proc = run_snakemake(tmp_path, "--cores", "1", check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("llmscape: job prepare_model failed: ") and "results/broken/logs/prepare_model.log" in last
    assert not (tmp_path / ".snakemake/locks").exists() or not any((tmp_path / ".snakemake/locks").iterdir())
