"""Step marks (resmon.collect.marks): the marks file, what the collector reads of it, the
segments made of them; and the --step, --mark and --context options' errors."""

from __future__ import annotations

import os

import orjson
import pytest

from resmon.cli import cli
from resmon.collect.marks import MarkReader, Segments, write_mark


def test_reader_starts_at_the_end_and_reads_whole_lines(tmp_path):
    path = tmp_path / "marks"
    write_mark(path, "old", 1.0)  # an earlier run's: never this run's
    reader = MarkReader(path)
    assert reader.read() == []
    write_mark(path, "build", 10.0)
    with open(path, "ab") as f:
        f.write(b'{"t": 11.0, "na')  # a writer half way through its line
    assert reader.read() == [(10.0, "build")]
    with open(path, "ab") as f:
        f.write(b'me": "test"}\nnot a mark\n{"t": "x", "name": "y"}\n')
    assert reader.read() == [(11.0, "test")]
    path.write_bytes(b"")  # truncated: read from the start again
    assert reader.read() == []
    write_mark(path, "again", 12.0)
    assert reader.read() == [(12.0, "again")]


def test_a_missing_or_unreadable_file_is_no_mark(tmp_path):
    reader = MarkReader(tmp_path / "none" / "marks")
    assert reader.read() == []
    path = tmp_path / "marks"
    reader = MarkReader(path)
    path.mkdir()  # a directory where the file should be: logged, not raised
    os.utime(path)
    assert reader.read() == []


def test_segments_interpolate_cpu_between_samples(tmp_path):
    path = tmp_path / "marks"
    segments = Segments(MarkReader(path))
    segments.sample(0.0, 0.0, 100.0)
    write_mark(path, "a", 1.5)  # half way between the samples at 1 and 2
    segments.sample(1.0, 1.0, 100.0)
    segments.sample(2.0, 3.0, 500.0)  # 2 CPU-s between 1 and 2: 1 before the mark
    write_mark(path, "b", 2.25)
    write_mark(path, "c", 2.5)  # shorter than an interval
    segments.sample(3.0, 5.0, 200.0)
    segments.sample(4.0, 6.0, 300.0)
    out = segments.summary(4.0, 6.0)
    assert [s["name"] for s in out] == ["a", "b", "c"]
    assert [s["cpu_seconds"] for s in out] == [1.5, 0.5, 2.0]
    assert sum(s["cpu_seconds"] for s in out) == 6.0 - 2.0  # the job's after the first mark
    assert [s["duration_seconds"] for s in out] == [0.75, 0.25, 1.5]
    # Memory: the largest sampled within; a segment without a sample gets the next one.
    assert [s["memory_bytes_peak"] for s in out] == [500, 200, 300]
    assert out[-1]["end_time"].startswith("1970-01-01T00:00:04")


def test_step_mark_and_context_option_errors(runner, tmp_path):
    def run(*args):
        return runner.invoke(cli, ["collect", f"--spool-dir={tmp_path / 's'}", *args])

    result = run("--step", "build")
    assert result.exit_code == 2 and "--step names a wrapped command" in result.output
    result = run("--step", "a\tb", "--", "true")
    assert result.exit_code == 2 and "control characters" in result.output
    result = run("--mark", "x", "--", "true")
    assert result.exit_code == 2 and "--mark takes no command" in result.output
    result = run("--context", "colour=red", "--", "true")
    assert result.exit_code == 2 and "unknown context key 'colour'" in result.output
    result = run("--mark", "compile", f"--marks-file={tmp_path / 'm' / 'marks'}")
    assert result.exit_code == 0, result.output
    [line] = (tmp_path / "m" / "marks").read_bytes().splitlines()
    assert orjson.loads(line)["name"] == "compile"
    # Without --marks-file: beside the spool directory, where a sidecar looks.
    assert run("--mark", "test").exit_code == 0
    assert (tmp_path / "marks").exists()
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = run("--mark", "x", f"--marks-file={blocked / 'marks'}")
    assert result.exit_code == 1 and "cannot write the mark" in result.output


@pytest.mark.parametrize("step", ["build", "unit tests"])
def test_a_wrapped_step_says_its_name_and_context(runner, tmp_path, monkeypatch, step):
    monkeypatch.setenv("GITHUB_REF_NAME", "main")
    monkeypatch.setenv("GITHUB_REF", "refs/heads/main")
    summary_file = tmp_path / "summary.json"
    result = runner.invoke(
        cli,
        [
            "collect",
            "--interval=0.1s",
            f"--summary-file={summary_file}",
            "--context",
            "sha=abc",
            "--step",
            step,
            "--",
            "true",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["step"] == {"name": step}
    assert summary["context"]["branch"] == "main" and summary["context"]["sha"] == "abc"
    assert summary["command"]["container"] == step
