"""The Markdown report's Mermaid charts through a real Mermaid renderer.

mermaid-cli (``mmdc``, pinned in package.json / package-lock.json, installed by
``PUPPETEER_SKIP_DOWNLOAD=1 npm ci``) drives Debian's headless chromium, as GitHub's
and Forgejo's pages run Mermaid in a browser.  Every chart of the reports of the
stored summaries and of two real ``resmon collect`` runs (a wrapped command, and a
sidecar with ``CGROUP_PROCESS_MAP``) goes through one ``mmdc`` call, which renders
each block of a Markdown file to an SVG; the test then reads the drawn lines back
out of the SVGs.  In CI (``CI`` set) a missing ``mmdc`` or chromium fails the test;
elsewhere it skips.  ``RESMON_CHART_PNG_DIR=DIR`` also writes PNGs there, to look at.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from resmon.collect.report import JOB_COLOURS, OTHERS_COLOUR, job_containers, render_markdown

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
MMDC = ROOT / "node_modules" / ".bin" / "mmdc"
CHROMIUM = Path("/usr/bin/chromium")
STORED = ROOT / "tests" / "fixtures" / "summaries"
RESMON = [sys.executable, "-m", "resmon"]
SVG = "{http://www.w3.org/2000/svg}"
# No network here: the background services would only retry refused connections.
PUPPETEER = {
    "executablePath": str(CHROMIUM),
    "args": [
        "--no-sandbox",
        "--headless",
        "--disable-gpu",
        "--disable-quic",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ],
}
LOAD_NAME = "chartload"
# Renames itself (what /proc/PID/stat shows, so CGROUP_PROCESS_MAP can name it), then
# spins while its memory grows by 2 MiB every 50 ms, for the given seconds.
LOAD = (
    f"import sys, time\nopen('/proc/self/comm', 'w').write('{LOAD_NAME}')\n"
    "held, end = [], time.monotonic() + float(sys.argv[1])\n"
    "while time.monotonic() < end:\n"
    "    held.append(b'x' * (2 << 20))\n"
    "    t = time.monotonic() + 0.05\n"
    "    while time.monotonic() < t: pass\n"
)


@dataclass
class Drawn:
    """One rendered chart: what the report asked for and what the SVG shows."""

    block: str  # the Mermaid source
    svg: Path
    strokes: list[str]  # each line plot's colour, in drawing order
    points: list[int]  # each line plot's number of points

    def asked(self, pattern: str) -> list[str]:
        return re.findall(pattern, self.block)


def _need_tools() -> None:
    missing = [str(p) for p in (MMDC, CHROMIUM) if not p.exists()]
    if not missing:
        return
    message = f"the Mermaid renderer is missing: {', '.join(missing)} (.ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _real_wrapper_run(tmp: Path) -> dict:
    summary = tmp / "wrapper.json"
    # Something busy outside the command, so the chart has other processes to sum
    # whatever else the machine is doing (a quiet CI machine may be doing nothing).
    outside = subprocess.Popen([sys.executable, "-c", LOAD, "30"])
    try:
        return _wrapped(tmp, summary)
    finally:
        outside.kill()
        outside.wait()


def _wrapped(tmp: Path, summary: Path) -> dict:
    run = subprocess.run(
        [
            *RESMON,
            "collect",
            "--interval=0.2s",
            f"--output={tmp / 'wrapper.jsonl'}",
            f"--summary-file={summary}",
            "--",
            sys.executable,
            "-c",
            LOAD,
            "1.5",
        ],
        capture_output=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr.decode()
    return orjson.loads(summary.read_bytes())


def _real_sidecar_run(tmp: Path) -> dict:
    summary, records = tmp / "sidecar.json", tmp / "sidecar.jsonl"
    load = subprocess.Popen([sys.executable, "-c", LOAD, "30"])
    try:
        # The map names a container by the name a process has when first seen.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{load.pid}/comm").read_text().strip() != LOAD_NAME:
            assert time.monotonic() < deadline, "the load did not rename itself"
            time.sleep(0.02)
        collector = subprocess.Popen(
            [
                *RESMON,
                "collect",
                "--interval=0.2s",
                f"--output={records}",
                f"--summary-file={summary}",
            ],
            env={**os.environ, "CGROUP_PROCESS_MAP": json.dumps({LOAD_NAME: "workload"})},
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if records.exists() and records.read_bytes().count(b"metrics_collected") >= 8:
                break
            time.sleep(0.05)
        collector.send_signal(signal.SIGTERM)
        _, err = collector.communicate(timeout=30)
        assert collector.returncode == 0, err.decode()
    finally:
        load.kill()
        load.wait()
    return orjson.loads(summary.read_bytes())


def _svg_lines(svg: Path) -> tuple[list[str], list[int]]:
    root = ET.parse(svg).getroot()
    strokes, points = [], []
    for group in root.iter(f"{SVG}g"):
        if re.fullmatch(r"line-plot-\d+", group.get("class", "")):
            path = group.find(f"{SVG}path")
            assert path is not None, f"{svg.name}: a line plot without a path"
            strokes.append(path.get("stroke", "").upper())
            points.append(len(re.findall(r"[ML]", path.get("d", ""))))
    return strokes, points


@dataclass
class Rendered:
    summaries: dict[str, dict]
    charts: dict[str, list[Drawn]]  # per report, its CPU then memory chart


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Rendered:
    _need_tools()
    tmp = tmp_path_factory.mktemp("charts")
    summaries = {
        "stored sidecar": orjson.loads((STORED / "run_summary.json").read_bytes()),
        "stored wrapper": orjson.loads((STORED / "wrapper_make_summary.json").read_bytes()),
        "real wrapper": _real_wrapper_run(tmp),
        "real sidecar": _real_sidecar_run(tmp),
    }
    reports = {name: render_markdown(s) for name, s in summaries.items()}
    (tmp / "summaries.json").write_bytes(orjson.dumps(summaries))
    source = tmp / "reports.md"
    source.write_text("".join(f"# {name}\n\n{md}" for name, md in reports.items()))
    config = tmp / "puppeteer.json"
    config.write_text(json.dumps(PUPPETEER))
    formats = ["svg"] + (["png"] if os.environ.get("RESMON_CHART_PNG_DIR") else [])
    for fmt in formats:
        out_dir = tmp if fmt == "svg" else Path(os.environ["RESMON_CHART_PNG_DIR"])
        out_dir.mkdir(parents=True, exist_ok=True)
        # One call renders every block (chromium starts once): out-1.svg, out-2.svg, ...
        run = subprocess.run(
            [str(MMDC), "-q", "-p", str(config), "-i", str(source), "-o", str(out_dir / "out.md")]
            + ["-e", fmt],
            capture_output=True,
            timeout=180,
        )
        assert run.returncode == 0, (run.stdout + run.stderr).decode()
    charts: dict[str, list[Drawn]] = {}
    number = 0
    for name, md in reports.items():
        charts[name] = []
        for block in re.findall(r"```mermaid\n(.*?)```", md, flags=re.S):
            number += 1
            svg = tmp / f"out-{number}.svg"
            strokes, points = _svg_lines(svg)
            charts[name].append(Drawn(block, svg, strokes, points))
    return Rendered(summaries, charts)


REPORTS = ["stored sidecar", "stored wrapper", "real wrapper", "real sidecar"]


@pytest.mark.parametrize("report", REPORTS)
def test_every_chart_renders_with_the_lines_and_colours_asked_for(rendered, report):
    charts = rendered.charts[report]
    assert [c.asked(r'title "(.*?)"') for c in charts] == [["CPU (cores)"], ["Memory (MiB)"]]
    for chart in charts:
        text = chart.svg.read_text()
        assert chart.svg.stat().st_size > 1000 and "Syntax error" not in text
        asked = chart.asked(r"line \[(.*?)\]")
        palette = chart.asked(r'"plotColorPalette": "(.*?)"')[0].upper().split(", ")
        # One drawn line per series, in the palette's colour, with every point.
        assert chart.strokes == palette
        assert len(chart.strokes) == len(asked) >= 1
        assert chart.points == [len(a.split(", ")) for a in asked]
        # The job's first container is drawn last (on top) in the strongest colour.
        assert chart.strokes[-1] == JOB_COLOURS[0].hex.upper()


def test_wrapper_charts_are_the_command_and_one_grey_line(rendered):
    for report in ("stored wrapper", "real wrapper"):
        cpu, mem = rendered.charts[report]
        assert job_containers(rendered.summaries[report]) == ["command"]
        assert cpu.strokes == [OTHERS_COLOUR.hex.upper(), JOB_COLOURS[0].hex.upper()]
        assert mem.strokes == [JOB_COLOURS[0].hex.upper()]


def test_real_sidecar_run_charts_the_mapped_container_in_blue(rendered):
    summary = rendered.summaries["real sidecar"]
    # The load is the only process CGROUP_PROCESS_MAP names: its container is the job.
    assert job_containers(summary) == ["workload"]
    cpu, mem = rendered.charts["real sidecar"]
    assert cpu.strokes[-1] == mem.strokes[-1] == JOB_COLOURS[0].hex.upper()
    assert set(cpu.strokes) <= {OTHERS_COLOUR.hex.upper(), JOB_COLOURS[0].hex.upper()}
    # The blue line is the workload's own figures (the load spun all along: above zero).
    blue = [float(v) for v in cpu.asked(r"line \[(.*?)\]")[-1].split(", ")]
    own = [round(p["containers"]["workload"]["cpu_cores"] or 0, 3) for p in summary["timeline"]]
    assert blue == own and max(blue) > 0
    memory = [float(v) for v in mem.asked(r"line \[(.*?)\]")[-1].split(", ")]
    own_memory = [
        round((p["containers"]["workload"]["memory_bytes"] or 0) / 2**20, 3)
        for p in summary["timeline"]
    ]
    assert memory == own_memory and max(memory) > 0
    # The load held 2 MiB more every 50 ms (its container is its cgroup's processes,
    # which on a runner whose processes share one cgroup are more than the load).
    [load] = [p for p in summary["top_mem_processes"] if p["name"] == LOAD_NAME]
    assert load["container"] == "workload" and load["peak_mem_rss_bytes"] > 20 * 2**20
