"""The Markdown job summary and the JSON summary file, from a stored run summary."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from resmon.collect.report import (
    JOB_COLOURS,
    OTHERS_COLOUR,
    append_markdown,
    format_bytes,
    job_containers,
    render_markdown,
    write_summary_file,
)

STORED = Path(__file__).parents[1] / "fixtures" / "summaries" / "run_summary.json"
WRAPPER = STORED.parent / "wrapper_make_summary.json"


def stored() -> dict:
    return orjson.loads(STORED.read_bytes())


def mermaid_blocks(text: str) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)```", text, flags=re.S)


def chart(block: str) -> dict:
    """An xychart block's title, palette (drawing order), y-axis top and lines."""
    palette = re.search(r'"plotColorPalette": "(.*?)"', block)
    return {
        "title": re.search(r'title "(.*?)"', block)[1],
        "palette": palette[1].split(", ") if palette else [],
        "top": float(re.search(r"y-axis .* 0 --> (\S+)", block)[1]),
        "lines": [
            [float(v) for v in line.split(", ")] for line in re.findall(r"line \[(.*?)\]", block)
        ],
    }


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
    cpu, mem = (chart(b) for b in blocks)
    assert blocks[0].startswith("xychart-beta\n%%{init: ") and cpu["title"] == "CPU (cores)"
    assert 'x-axis "seconds since start" 0 --> 10' in blocks[0]
    # Both containers are named (CGROUP_PROCESS_MAP), so both are the job's. The busier
    # one (runner, 12 CPU-seconds) is drawn last, on top, in blue; missing values as 0.
    assert cpu["lines"] == [[0, 0.05, 0.1, 0.2, 0.25, 0], [0, 1, 1.5, 1.9, 1.95, 0.5]]
    assert cpu["palette"] == ["#D55E00", "#1F6FEB"] == mem["palette"]
    assert cpu["top"] == 2.2 and mem["top"] == 850
    assert mem["lines"][1][:2] == [500, 500]


def test_legend_under_each_chart_matches_the_palette_and_escapes_names():
    md = render_markdown(stored())
    legends = [line for line in md.splitlines() if line.startswith("Lines: ")]
    assert legends == ["Lines: 🟦 **runner** (blue) · 🟧 **sidecar&lt;script&gt;** (orange)"] * 2
    words = {c.hex: c.word for c in (*JOB_COLOURS, OTHERS_COLOUR)}
    for block, legend in zip(mermaid_blocks(md), legends, strict=True):
        # The legend lists lines most important first; the palette is in drawing order.
        expected = [words[h] for h in reversed(chart(block)["palette"])]
        assert re.findall(r"\((\w+)\)", legend) == expected
    assert "<script>" not in md


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
    block = mermaid_blocks(render_markdown(summary))[0]
    assert [len(line) for line in chart(block)["lines"]] == [100] and "0 --> 299" in block


def test_wrapper_charts_the_command_and_the_rest_as_one_grey_line():
    summary = orjson.loads(WRAPPER.read_bytes())
    md = render_markdown(summary)
    cpu_block, mem_block = mermaid_blocks(md)
    cpu, mem = chart(cpu_block), chart(mem_block)
    command = [round(p["containers"]["command"]["cpu_cores"] or 0, 3) for p in summary["timeline"]]
    others = [
        round(sum(f["cpu_cores"] or 0 for n, f in p["containers"].items() if n != "command"), 3)
        for p in summary["timeline"]
    ]
    # Drawn first in grey (under), then the command in blue (on top).
    assert cpu["palette"] == ["#8C959F", "#1F6FEB"]
    assert cpu["lines"] == [others, command]
    # The host's ~1 GiB would flatten the command's megabytes: memory is the command's alone.
    assert mem["palette"] == ["#1F6FEB"] and len(mem["lines"]) == 1
    assert mem["lines"][0][1] == round(
        summary["timeline"][1]["containers"]["command"]["memory_bytes"] / 2**20, 3
    )
    charts = md[md.index("#### Over time") :]
    assert "/process_api/" not in charts and "host" not in charts
    assert "Lines: 🟦 **command** (blue) · ⬜ other processes, summed (grey)" in charts
    assert "Lines: 🟦 **command** (blue)\n" in charts


def sidecar_summary(
    containers: dict[str, tuple[float, float]], cpu_seconds: dict[str, float]
) -> dict:
    """Three samples; each container at (cores, bytes) from the second sample on."""
    timeline = [
        {
            "t": float(t),
            "cpu_percent": 50.0,
            "mem_used_bytes": 3 * 2**30,
            "containers": {
                n: {"cpu_cores": None if t == 0 else cores, "memory_bytes": mem}
                for n, (cores, mem) in containers.items()
            },
        }
        for t in range(3)
    ]
    return stored() | {
        "timeline": timeline,
        "containers": [{"name": n, "cpu_seconds": s} for n, s in cpu_seconds.items()],
    }


def test_sidecar_charts_named_containers_not_host_unknown_or_cgroup_paths():
    summary = sidecar_summary(
        {
            "build": (1.5, 2 * 2**30),
            "4fca0b1c2d3e": (0.5, 2**20),  # a container runtime's id: a real container
            "host": (0.25, 2**30),
            "unknown": (0.125, 0),
            "/user.slice/user-1000.slice": (1.0, 2**29),
        },
        {"build": 3.0, "4fca0b1c2d3e": 1.0, "host": 9.0, "/user.slice/user-1000.slice": 2.0},
    )
    assert job_containers(summary) == ["build", "4fca0b1c2d3e"]
    md = render_markdown(summary)
    cpu, mem = (chart(b) for b in mermaid_blocks(md))
    # Everything else is one grey line; the busiest job container is blue, drawn last.
    assert cpu["palette"] == ["#8C959F", "#D55E00", "#1F6FEB"]
    assert cpu["lines"] == [[0, 1.375, 1.375], [0, 0.5, 0.5], [0, 1.5, 1.5]]
    assert mem["lines"] == [[1, 1, 1], [2048, 2048, 2048]]
    # 2 GiB x 1.1, rounded up and written as a plain number.
    assert mem["top"] == 2300 and "e+" not in md
    charts = md[md.index("#### Over time") :]
    assert "user.slice" not in charts and "**host**" not in charts


def test_five_job_containers_are_charted_and_the_quietest_named():
    names = ["a", "b", "c", "d", "e", "f", "g"]
    summary = sidecar_summary(
        {n: (0.1 * (i + 1), 2**20) for i, n in enumerate(names)},
        {n: float(i) for i, n in enumerate(names)},
    )
    assert job_containers(summary) == ["g", "f", "e", "d", "c", "b", "a"]
    md = render_markdown(summary)
    cpu = chart(mermaid_blocks(md)[0])
    assert cpu["palette"] == [c.hex for c in reversed(JOB_COLOURS)]
    assert cpu["lines"][-1] == [0, 0.7, 0.7]
    assert "Not charted (less CPU): b, a" in md


def test_no_job_container_charts_the_machine():
    summary = sidecar_summary({"host": (0.5, 2**30), "/system.slice/x": (0.5, 2**20)}, {})
    assert job_containers(summary) == []
    cpu, mem = (chart(b) for b in mermaid_blocks(render_markdown(summary)))
    assert cpu["title"] == "Machine CPU busy (%)" and cpu["lines"] == [[50, 50, 50]]
    assert mem["title"] == "Machine memory used (MiB)" and mem["lines"] == [[3072] * 3]
    assert cpu["palette"] == mem["palette"] == ["#1F6FEB"]
    assert "Lines: 🟦 the whole machine (blue)" in render_markdown(summary)


def test_a_wrapped_command_missing_from_the_timeline_charts_the_machine():
    summary = stored() | {"command": {"name": "true", "container": "command", "exit_code": 0}}
    assert job_containers(summary) == []
    assert chart(mermaid_blocks(render_markdown(summary))[0])["title"] == "Machine CPU busy (%)"


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
    summary = orjson.loads(WRAPPER.read_bytes())
    md = render_markdown(summary)
    assert md.startswith("### Resource usage: make\n")
    assert "exit code 0" in md and f"{summary['cpu_seconds']:.1f} CPU-seconds" in md
    command = next(c for c in summary["containers"] if c["name"] == "command")
    rows = [line for line in md.splitlines() if line.startswith("| **")]
    row = rows[0]  # the wrapped command's container comes first
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "2.00" and cells[8] == "512.0 MiB"
    assert cells[3].startswith(f"{command['cpu_cores']['peak']:.2f} (")
    cpu_chart = chart(mermaid_blocks(md)[0])
    assert len(cpu_chart["lines"]) == 2
    assert all(len(line) == len(summary["timeline"]) for line in cpu_chart["lines"])


# --- the job's figures first, each said what it is (issue #12) -----------------------

STATS = ("peak", "p99", "p95", "p75", "p50", "avg")


def stats(peak: float, p95: float) -> dict:
    return {k: (peak if k == "peak" else p95) for k in STATS}


def with_job(**job) -> dict:
    """The stored sidecar run as the current collector reports it: a job block, memory
    kinds per container, the job's own top processes with their container."""
    summary = stored()
    summary["containers"][0].update(memory_kind="cgroup")
    summary["containers"][1].update(memory_kind="pss")
    summary["job"] = {
        "scope": "containers",
        "containers": ["runner", "sidecar<script>"],
        "cpu_cores": stats(2.1, 1.95),
        "cpu_seconds": 12.75,
        "memory_bytes": stats(805306368 + 33554432, 733554432),
        "memory_kind": "mixed",
        "memory_peak": {
            "headline": 838860800,
            "low": 838860800,
            "high": 943718400,
            "basis": "cgroup_peak",
        },
        "limit_cpu_cores": None,
        "limit_memory_bytes": None,
    } | job
    for p in summary["top_cpu_processes"] + summary["top_mem_processes"]:
        p["container"] = "runner"
    return summary


def table(md: str, first_cell: str) -> list[list[str]]:
    """The rows of the table whose header starts with ``first_cell``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_cell}"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_the_jobs_figures_come_first_and_say_what_they_are():
    md = render_markdown(with_job())
    job = table(md, "**job**")
    assert job[0][0] == "**job**: its containers: runner, sidecar&lt;script&gt;"
    assert job[2:] == [
        ["CPU p95 · peak (cores)", "1.95 · **2.10**"],
        ["CPU time", "**12.8 CPU-seconds**"],
        [
            "memory peak (mixed)",
            "**800.0 MiB**; the true peak is 800.0 MiB .. 900.0 MiB "
            "(headline: the cgroup's own peak)",
        ],
        ["memory p95 (mixed)", "699.6 MiB"],
    ]
    # Before every other table; the headline no longer has a CPU total of unsaid scope.
    assert md.index("| **job**") < md.index("| container |") < md.index("| host (whole machine)")
    assert "CPU-seconds ·" not in md.splitlines()[2]
    containers = table(md, "container")
    assert containers[0][5] == "memory is"
    assert [row[5] for row in containers[2:]] == ["cgroup", "PSS"]
    assert "Memory is PSS (shared pages counted once)" in md


def test_a_wrapped_commands_job_against_its_limits():
    summary = with_job(
        scope="command",
        containers=["runner"],
        memory_kind="pss",
        limit_cpu_cores=2.0,
        limit_memory_bytes=1073741824,
        memory_peak={"headline": 805306368, "low": 800000000, "high": 900000000},
    )
    summary["command"] = {"name": "make", "container": "runner", "exit_code": 0}
    md = render_markdown(summary)
    job = table(md, "**job**")
    assert job[0][0] == "**job**: the wrapped command's process tree"
    assert job[2][1] == "1.95 (98%) · **2.10** (105%) of 2.00"
    assert job[4] == [
        "memory peak (PSS)",
        "**768.0 MiB** (75%) of 1.0 GiB; the true peak is 762.9 MiB .. 858.3 MiB",
    ]
    # The job's container in the table; the rest of the machine folded away.
    assert [row[0] for row in table(md, "container")[2:]] == ["**runner**"]
    assert "<details><summary>Other containers on the host (1)</summary>" in md
    assert md.index("Other containers") < md.index("| host (whole machine)")


def test_what_the_command_left_running_is_named():
    summary = with_job(scope="command", containers=["runner"])
    summary["command"] = {
        "name": "sh",
        "container": "runner",
        "exit_code": 0,
        "left_running": {
            "count": 10,
            "processes": [
                {"pid": 12, "name": "awk", "cpu_seconds": 1.094},
                {"pid": 11, "name": "sleep", "cpu_seconds": 0.0},
                {"pid": 13, "name": "a|<b>", "cpu_seconds": 0.0},
            ],
            "cpu_seconds": 1.094,
            "killed": False,
        },
    }
    md = render_markdown(summary)
    assert (
        "- ⚠️ **left running** when the command exited: 10 processes: awk (pid 12, 1.09 CPU-s), "
        "sleep (pid 11), a\\|&lt;b&gt; (pid 13) and 7 more; their 1.1 CPU-seconds until then "
        "are in the job's CPU time; not ended (--kill-left-running ends them)"
    ) in md
    summary["command"]["left_running"] |= {"count": 1, "processes": [], "killed": True}
    assert "1 process: " in render_markdown(summary)
    assert "ended by --kill-left-running" in render_markdown(summary)


def test_the_jobs_top_processes_carry_their_container_and_the_hosts_say_so():
    md = render_markdown(with_job())
    assert "<details><summary>The job's top processes by CPU</summary>" in md
    assert table(md, "pid")[2] == ["4242", "cc1", "runner", "99.5%", "100.0 MiB"]
    old = render_markdown(stored())
    assert "<details><summary>Top processes by CPU (host)</summary>" in old
    assert table(old, "pid")[2] == ["4242", "cc1", "99.5%", "100.0 MiB"]


def test_a_summary_without_the_new_fields_renders_as_before():
    md = render_markdown(stored())
    assert "| **job**" not in md and "left running" not in md and "memory is" not in md
    assert "14.2 CPU-seconds" in md.splitlines()[2]
    assert "| host (whole machine) | p50 | p95 | peak | avg |" in md
    assert "Other containers" not in md
