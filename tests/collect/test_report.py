"""The Markdown job summary and the JSON summary file, from a stored run summary."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from resmon.collect.report import append_markdown, format_bytes, render_markdown, write_summary_file

STORED = Path(__file__).parents[1] / "fixtures" / "summaries" / "run_summary.json"


def stored() -> dict:
    return orjson.loads(STORED.read_bytes())


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)


def test_container_table_has_p50_p95_peak_against_limits():
    md = render_markdown(
        stored(), {"repository": "o/r", "workflow": "ci", "job": "build", "run_id": "7"}
    )
    assert "**o/r/ci/build** · run 7 · 10s · 6 samples every 2s · 14.2 CPU-seconds" in md
    row = next(line for line in md.splitlines() if line.startswith("| **runner**"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "**runner**",
        "1.00",
        "1.90 (95%)",
        "1.95 (98%)",
        "2.00",
        "500.0 MiB",
        "667.6 MiB (65%)",
        "768.0 MiB (75%)",
        "1.0 GiB",
        "12.0",
    ]
    sidecar = next(
        line for line in md.splitlines() if "sidecar" in line and line.startswith("| **")
    )
    assert "sidecar&lt;script&gt;" in sidecar and "<script>" not in md.split("```mermaid")[0]
    assert sidecar.count("none") == 2


def test_throttling_and_oom_kills_are_called_out():
    md = render_markdown(stored())
    assert "**runner**: CPU throttled for 1.5 s (12% of periods), 1 OOM kill" in md


def test_top_processes_with_hostile_names_escaped():
    md = render_markdown(stored())
    assert "| 4242 | cc1 | 99.5% | 100.0 MiB |" in md
    assert "| 77 | a) \\| (b | 12.0% | 1.0 MiB |" in md


def test_mermaid_charts_of_cpu_cores_and_memory_from_the_timeline():
    blocks = mermaid_blocks(render_markdown(stored()))
    assert len(blocks) == 2
    cpu, mem = blocks
    assert cpu.startswith("xychart-beta\n") and 'title "CPU (cores)"' in cpu
    assert 'x-axis "seconds since start" 0 --> 10' in cpu
    lines = re.findall(r"line \[(.*?)\]", cpu)
    # One line per container in summary order; missing values (first sample, absent) as 0.
    assert lines == ["0, 1, 1.5, 1.9, 1.95, 0.5", "0, 0.05, 0.1, 0.2, 0.25, 0"]
    mem_lines = re.findall(r"line \[(.*?)\]", mem)
    assert mem_lines[0].split(", ")[:2] == ["500", "500"]
    assert "Lines, in order: 1. runner, 2. sidecar&lt;script&gt;" in render_markdown(stored())


def test_long_timeline_is_thinned_for_the_chart():
    summary = stored()
    summary["timeline"] = [
        {
            "t": float(i),
            "cpu_percent": 10.0,
            "mem_used_bytes": 1,
            "containers": {"runner": {"cpu_cores": i % 3, "memory_bytes": 1}},
        }
        for i in range(300)
    ]
    cpu = mermaid_blocks(render_markdown(summary))[0]
    values = re.findall(r"line \[(.*?)\]", cpu)[0].split(", ")
    assert len(values) == 100 and "0 --> 299" in cpu


def test_minimal_wire_summary_without_additive_fields_renders():
    # A Go collector's summary: no timeline, no limits, no collector block.
    summary = {
        "start_time": "2026-01-01T00:00:00Z",
        "end_time": "2026-01-01T00:01:00Z",
        "duration_seconds": 60,
        "sample_count": 30,
        "cpu_total_percent": {"peak": 10, "p99": 9, "p95": 9, "p75": 5, "p50": 4, "avg": 4.5},
        "mem_used_bytes": {
            "peak": 1024,
            "p99": 1024,
            "p95": 1024,
            "p75": 1024,
            "p50": 1024,
            "avg": 1024,
        },
        "mem_used_percent": {"peak": 1, "p99": 1, "p95": 1, "p75": 1, "p50": 1, "avg": 1},
        "top_cpu_processes": [],
        "top_mem_processes": [],
        "containers": [
            {
                "name": "runner",
                "cpu_cores": {"peak": 1, "p99": 1, "p95": 1, "p75": 1, "p50": 1, "avg": 1},
                "memory_bytes": {"peak": 1, "p99": 1, "p95": 1, "p75": 1, "p50": 1, "avg": 1},
            }
        ],
    }
    md = render_markdown(summary)
    assert "| **runner** | 1.00 | 1.00 | 1.00 | none |" in md
    assert "| CPU busy | 4.0% | 9.0% | 10.0% | 4.5% |" in md
    assert "```mermaid" not in md and "1m 0s" in md


def test_wrapped_command_name_and_exit_code_in_the_heading():
    summary = stored() | {"command": {"name": "make", "exit_code": 2}}
    md = render_markdown(summary)
    assert md.startswith("### Resource usage: make\n")
    assert "exit code 2" in md


def test_summary_file_and_markdown_append(tmp_path):
    path = tmp_path / "summary.json"
    write_summary_file(path, stored())
    assert orjson.loads(path.read_bytes()) == stored()
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    md = tmp_path / "step-summary.md"
    md.write_text("# earlier step\n")
    append_markdown(md, render_markdown(stored()))
    text = md.read_text()
    assert text.startswith("# earlier step\n### Resource usage")


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 1024**3) == "3.0 GiB"
    assert format_bytes(None) == "–"


def test_a_real_wrapper_run_renders():
    # Captured from `resmon collect --summary-file ... -- make -s -j2` on this machine.
    summary = orjson.loads((STORED.parent / "wrapper_make_summary.json").read_bytes())
    md = render_markdown(summary)
    assert md.startswith("### Resource usage: make\n")
    assert "exit code 0" in md and f"{summary['cpu_seconds']:.1f} CPU-seconds" in md
    command = next(c for c in summary["containers"] if c["name"] == "command")
    rows = [line for line in md.splitlines() if line.startswith("| **")]
    row = rows[0]  # the wrapped command's container comes first
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "2.00" and cells[8] == "512.0 MiB"
    assert cells[3].startswith(f"{command['cpu_cores']['peak']:.2f} (")
    cpu_chart = mermaid_blocks(md)[0]
    lines = re.findall(r"line \[(.*?)\]", cpu_chart)
    assert 1 <= len(lines) <= 6
    assert len(lines[0].split(", ")) == len(summary["timeline"])
    assert cpu_chart.count("line [") == len(lines)
    assert "Lines, in order: 1. command," in md
