"""The metrics_collected record carries the Go collector's fields: a vector per field.

Go's names, nesting and units (``collection_time``, ``total_processes``, ``cpu``,
``memory``, ``top_cpu``, ``top_memory``, ``cgroups``; the shape and where it comes
from are in the docstring of resmon/collect/samples.py) come first, resmon's keys
follow unchanged.  Each field is checked in the printed record, JSON and text: from a
Sample of known values, from a Sampler on a scripted /proc tree, and from a real
``resmon collect`` run.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from fixtures.fakeproc import PF_KTHREAD, FakeProc

from resmon import procfs
from resmon.collect.containers import Limits
from resmon.collect.records import RecordWriter, format_record
from resmon.collect.sampler import Sampler, SamplerConfig
from resmon.collect.samples import GO_SAMPLE_FIELDS, ContainerSample, ProcessSample, Sample

MIB = 1024 * 1024
GIB = 1024 * MIB
TICK = procfs.CLK_TCK
PAGE = procfs.PAGE_SIZE
# 2026-01-01T00:00:00Z
NEW_YEAR = 1767225600.0
RESMON_KEYS = [
    "elapsed_seconds",
    "cpu_total_percent",
    "system_cpu_seconds",
    "mem_total_bytes",
    "mem_used_bytes",
    "mem_used_percent",
    "process_count",
    "top_cpu_processes",
    "top_mem_processes",
    "containers",
]


def printed(body: dict, log_format: str) -> bytes:
    """The line RecordWriter prints for ``body``, with its ``time`` pinned."""
    out = io.BytesIO()
    RecordWriter(out, log_format).write("metrics_collected", body)
    line = out.getvalue()
    assert line.count(b"\n") == 1
    if log_format == "json":
        record = orjson.loads(line)
        assert record.pop("time").endswith("Z")
        return format_record({"time": "T", **record}, "json")
    head, _, rest = line.partition(b" ")
    assert head.startswith(b"time=")
    return b"time=T " + rest


def known_sample() -> Sample:
    make = ProcessSample(42, "make", 150.0, 300 * MIB, "runner", ppid=1, threads=1)
    cc1 = ProcessSample(43, "cc1 plus", 0.5, 900 * MIB, "runner", ppid=42)
    pg = ProcessSample(44, "postgres", 12.25, 64 * MIB, "db")
    runner = ContainerSample(
        name="runner",
        cpu_cores=1.5,
        memory_bytes=1200 * MIB,
        process_count=2,
        cpu_seconds=12.5,
        cpu_percent_of_limit=75.0,
        memory_percent_of_limit=58.59375,
        limit_cpu_cores=2.0,
        limit_memory_bytes=2 * GIB,
    )
    db = ContainerSample(
        name="db", cpu_cores=0.125, memory_bytes=64 * MIB, process_count=1, cpu_seconds=0.5
    )
    return Sample(
        timestamp=NEW_YEAR + 0.25,
        elapsed=2.0,
        cpu_total_percent=37.5,
        mem_total_bytes=8 * GIB,
        mem_used_bytes=2 * GIB,
        mem_used_percent=25.0,
        cpu_seconds_total=100.0,
        top_cpu=[make, pg],
        top_mem=[cc1, make],
        processes=[make, cc1, pg],
        containers={"runner": runner, "db": db},
    )


KNOWN_GO_FIELDS = {
    "collection_time": "2026-01-01T00:00:00.250000Z",
    "total_processes": 3,
    "cpu": {"total_percent": 37.5},
    "memory": {
        "total_bytes": 8 * GIB,
        "used_bytes": 2 * GIB,
        "available_bytes": 6 * GIB,
        "used_percent": 25.0,
    },
    "top_cpu": [
        {"pid": 42, "name": "make", "cpu_percent": 150.0},
        {"pid": 44, "name": "postgres", "cpu_percent": 12.25},
    ],
    "top_memory": [
        {"pid": 43, "name": "cc1 plus", "rss_bytes": 900 * MIB},
        {"pid": 42, "name": "make", "rss_bytes": 300 * MIB},
    ],
    "cgroups": {
        # Containers in name order; no limit, no used_percent / limit fields (omitempty).
        "db": {
            "name": "db",
            "cpu": {"total_ticks": TICK // 2, "used_cores": 0.125},
            "memory": {"total_rss_bytes": 64 * MIB},
            "processes": 1,
        },
        "runner": {
            "name": "runner",
            "cpu": {
                "total_ticks": 12 * TICK + TICK // 2,
                "used_cores": 1.5,
                "used_percent": 75.0,
                "limit_cores": 2.0,
            },
            "memory": {
                "total_rss_bytes": 1200 * MIB,
                "used_percent": 58.59,
                "limit_bytes": 2 * GIB,
            },
            "processes": 2,
        },
    },
}


@pytest.mark.parametrize("field", GO_SAMPLE_FIELDS)
def test_json_record_has_each_go_field(field):
    record = orjson.loads(printed(known_sample().record(), "json"))
    assert record[field] == KNOWN_GO_FIELDS[field]


def test_json_record_is_go_fields_first_then_every_resmon_key():
    sample = known_sample()
    record = orjson.loads(printed(sample.record(), "json"))
    assert list(record) == ["time", "level", "msg", *GO_SAMPLE_FIELDS, *RESMON_KEYS]
    assert record["msg"] == "metrics_collected" and record["level"] == "INFO"
    # resmon's own keys are as they were: nulls, names and units of their own.
    assert record["elapsed_seconds"] == 2.0 and record["process_count"] == 3
    assert record["top_cpu_processes"][0] == {
        "pid": 42,
        "name": "make",
        "cpu_percent": 150.0,
        "rss_bytes": 300 * MIB,
        "container": "runner",
    }
    assert [c["name"] for c in record["containers"]] == ["db", "runner"]
    assert record["containers"][1]["cpu_seconds"] == 12.5
    assert record["containers"][1]["limit_cpu_cores"] == 2.0


def test_text_record_writes_the_go_fields_as_slog_does():
    line = printed(known_sample().record(), "text").decode()
    go_part = (
        "time=T level=INFO msg=metrics_collected "
        "collection_time=2026-01-01T00:00:00.250000Z total_processes=3 "
        "cpu.total_percent=37.5 "
        f"memory.total_bytes={8 * GIB} memory.used_bytes={2 * GIB} "
        f"memory.available_bytes={6 * GIB} memory.used_percent=25 "
        'top_cpu="[map[cpu_percent:150 name:make pid:42] map[cpu_percent:12.25 name:postgres pid:44]]" '
        f'top_memory="[map[name:cc1 plus pid:43 rss_bytes:{900 * MIB}] '
        f'map[name:make pid:42 rss_bytes:{300 * MIB}]]" '
        f"cgroups.db.name=db cgroups.db.cpu.total_ticks={TICK // 2} cgroups.db.cpu.used_cores=0.125 "
        f"cgroups.db.memory.total_rss_bytes={64 * MIB} cgroups.db.processes=1 "
        f"cgroups.runner.name=runner cgroups.runner.cpu.total_ticks={12 * TICK + TICK // 2} "
        "cgroups.runner.cpu.used_cores=1.5 cgroups.runner.cpu.used_percent=75 "
        "cgroups.runner.cpu.limit_cores=2 "
        f"cgroups.runner.memory.total_rss_bytes={1200 * MIB} "
        "cgroups.runner.memory.used_percent=58.59 "
        f"cgroups.runner.memory.limit_bytes={2 * GIB} cgroups.runner.processes=2 "
    )
    assert line.startswith(go_part), line
    # resmon's text keys follow, unchanged.
    rest = line[len(go_part) :]
    assert rest.startswith("elapsed_seconds=2 cpu_total_percent=37.5 system_cpu_seconds=100 ")
    assert " top_cpu_processes=make[42]:150.0%/300.0MiB,postgres[44]:12.2%/64.0MiB " in rest
    assert "containers.runner.cpu_cores=1.5 " in rest and rest.endswith("\n")


def test_first_sample_go_fields_are_numbers_where_resmon_has_null():
    """No CPU interval yet (and a container of zombies without memory): Go prints 0."""
    worker = ProcessSample(7, "worker", None, 4096)
    zombies = ContainerSample(
        name="gone", cpu_cores=None, memory_bytes=None, process_count=1, cpu_seconds=0.0
    )
    sample = Sample(
        timestamp=NEW_YEAR,
        elapsed=None,
        cpu_total_percent=None,
        mem_total_bytes=1000,
        mem_used_bytes=1000,
        mem_used_percent=100.0,
        cpu_seconds_total=0.0,
        top_cpu=[],
        top_mem=[worker],
        processes=[worker],
        containers={"gone": zombies},
    )
    record = orjson.loads(printed(sample.record(), "json"))
    assert record["collection_time"] == "2026-01-01T00:00:00Z"
    assert record["cpu"] == {"total_percent": 0.0}
    assert record["memory"]["available_bytes"] == 0
    assert record["top_cpu"] == []
    assert record["top_memory"] == [{"pid": 7, "name": "worker", "rss_bytes": 4096}]
    assert record["cgroups"]["gone"]["cpu"] == {"total_ticks": 0, "used_cores": 0.0}
    assert record["cgroups"]["gone"]["memory"] == {"total_rss_bytes": 0}
    assert record["cpu_total_percent"] is None and record["elapsed_seconds"] is None
    assert record["containers"][0]["cpu_cores"] is None
    assert record["containers"][0]["memory_bytes"] is None
    # In a Go top_cpu item a process without a CPU reading is 0 too.
    assert worker.go_cpu_record() == {"pid": 7, "name": "worker", "cpu_percent": 0.0}
    text = printed(sample.record(), "text").decode()
    assert " cpu.total_percent=0 " in text and " top_cpu=[] " in text
    assert " cgroups.gone.cpu.used_cores=0 cgroups.gone.memory.total_rss_bytes=0 " in text


def sampled_fake_proc(tmp_path: Path) -> Sample:
    """Two readings of a scripted /proc: ``make`` busy 1.5 cores for a second in the
    container ``runner`` (limits 2 cores, 1000 pages), ``postgres`` idle in ``db``."""
    fp = FakeProc(tmp_path / "proc")
    fp.add(1, "init", ppid=0, cgroup="0::/\n", starttime=1)
    fp.add(2, "kthreadd", ppid=0, cgroup="0::/\n", rss=0, flags=PF_KTHREAD, starttime=1)
    fp.add(10, "bash", cgroup="0::/job\n", rss=300)
    fp.add(11, "make", ppid=10, cgroup="0::/job\n", rss=200)
    fp.add(20, "postgres", cgroup="0::/db\n", rss=50)
    sampler = Sampler(
        SamplerConfig(
            proc_path=str(fp.root),
            cgroup_path=str(tmp_path / "no-cgroupfs"),
            process_map={"make": "runner", "postgres": "db"},
            limits={"runner": Limits(cpu_cores=2.0, memory_bytes=1000 * PAGE)},
            top_n=2,
        )
    )
    fp.write(TICK)
    sampler.sample(now=NEW_YEAR)
    fp.advance(1.0, TICK)
    fp.run(11, TICK * 3 // 2)
    fp.write(TICK)
    return sampler.sample(now=NEW_YEAR + 1)


def test_sampler_on_a_fixture_tree_gives_the_go_fields(tmp_path):
    record = orjson.loads(printed(sampled_fake_proc(tmp_path).record(), "json"))
    assert record["collection_time"] == "2026-01-01T00:00:01Z"
    assert record["total_processes"] == record["process_count"] == 5
    # 150 busy ticks of 150 + 200 idle (two CPUs for one second).
    assert record["cpu"] == {"total_percent": round(150 / 350 * 100, 2)}
    assert record["memory"] == {
        "total_bytes": 8_000_000 * 1024,
        "used_bytes": 2_000_000 * 1024,
        "available_bytes": 6_000_000 * 1024,
        "used_percent": 25.0,
    }
    assert record["top_cpu"][0] == {"pid": 11, "name": "make", "cpu_percent": 150.0}
    assert record["top_memory"] == [
        {"pid": 10, "name": "bash", "rss_bytes": 300 * PAGE},
        {"pid": 11, "name": "make", "rss_bytes": 200 * PAGE},
    ]
    assert record["cgroups"]["runner"] == {
        "name": "runner",
        "cpu": {
            "total_ticks": TICK * 3 // 2,
            "used_cores": 1.5,
            "used_percent": 75.0,
            "limit_cores": 2.0,
        },
        "memory": {"total_rss_bytes": 500 * PAGE, "used_percent": 50.0, "limit_bytes": 1000 * PAGE},
        "processes": 2,
    }
    assert record["cgroups"]["db"] == {
        "name": "db",
        "cpu": {"total_ticks": 0, "used_cores": 0.0},
        "memory": {"total_rss_bytes": 50 * PAGE},
        "processes": 1,
    }
    assert list(record["cgroups"]) == sorted(record["cgroups"])
    assert [c["name"] for c in record["containers"]] == list(record["cgroups"])


def test_sampler_on_a_fixture_tree_text_record(tmp_path):
    line = printed(sampled_fake_proc(tmp_path).record(), "text").decode()
    for part in (
        " collection_time=2026-01-01T00:00:01Z total_processes=5 cpu.total_percent=42.86 ",
        ' top_cpu="[map[cpu_percent:150 name:make pid:11] ',
        f' top_memory="[map[name:bash pid:10 rss_bytes:{300 * PAGE}] '
        f'map[name:make pid:11 rss_bytes:{200 * PAGE}]]" ',
        f" cgroups.runner.cpu.total_ticks={TICK * 3 // 2} cgroups.runner.cpu.used_cores=1.5 "
        "cgroups.runner.cpu.used_percent=75 cgroups.runner.cpu.limit_cores=2 ",
        f" cgroups.runner.memory.total_rss_bytes={500 * PAGE} "
        f"cgroups.runner.memory.used_percent=50 cgroups.runner.memory.limit_bytes={1000 * PAGE} "
        "cgroups.runner.processes=2 ",
    ):
        assert part in line, (part, line)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_resmon_collect_prints_the_go_fields(tmp_path, log_format):
    """A real wrapped run: every sample has the Go fields; the run summary is as before."""
    out = tmp_path / "records"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "resmon",
            "collect",
            "--interval=0.2s",
            "--top=3",
            f"--log-format={log_format}",
            f"--output={out}",
            "--",
            sys.executable,
            "-c",
            "import time\nend = time.time() + 0.7\nwhile time.time() < end: pass",
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    lines = out.read_bytes().splitlines()
    samples = [line for line in lines if b"metrics_collected" in line]
    assert len(samples) >= 3
    if log_format == "text":
        for line in samples:
            text = line.decode()
            for key in ("collection_time=", "total_processes=", "cpu.total_percent="):
                assert f" {key}" in text
            assert " memory.available_bytes=" in text and " top_memory=" in text
            assert " cgroups.command.cpu.used_cores=" in text
        assert b"msg=run_summary" in lines[-1]
        return
    recs = [orjson.loads(line) for line in lines]
    for rec in recs[:-1]:
        assert list(rec)[3:10] == list(GO_SAMPLE_FIELDS)
        assert set(RESMON_KEYS) <= set(rec)
        assert rec["total_processes"] == rec["process_count"] > 0
        assert rec["collection_time"].endswith("Z")
        assert rec["cgroups"]["command"]["processes"] >= 1
    # The wrapped loop is busy: some later sample has it near a core in both shapes.
    busy = max(recs[1:-1], key=lambda r: r["cgroups"]["command"]["cpu"]["used_cores"])
    command = next(c for c in busy["containers"] if c["name"] == "command")
    assert busy["cgroups"]["command"]["cpu"]["used_cores"] == pytest.approx(command["cpu_cores"])
    assert busy["cgroups"]["command"]["cpu"]["used_cores"] > 0.05
    summary = recs[-1]
    assert summary["msg"] == "run_summary"
    assert not set(GO_SAMPLE_FIELDS) & set(summary)
