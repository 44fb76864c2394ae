"""bench/accuracy.py's table and its targets (see that module's docstring for the columns)."""

from __future__ import annotations

MIB = 1 << 20
CPU_TOLERANCE = 0.02
HEADLINE_TOLERANCE = 0.10
HEADLINE_INTERVAL = "1s"

COLUMNS = [
    ("workload", "<16"),
    ("int", ">4"),
    ("truth CPU-s", ">11"),
    ("resmon CPU-s", ">12"),
    ("ratio", ">6"),
    ("naive CPU-s", ">11"),
    ("true RSS", ">9"),
    ("true PSS", ">9"),
    ("ru_maxrss", ">9"),
    ("resmon peak", ">15"),
    ("range low..high", ">17"),
    ("in", ">3"),
    ("hl/true", ">7"),
]


def num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:.1f}"


def cells(row: dict) -> list[str]:
    truth, res = row["truth"], row["resmon"]
    peak = mib(res["headline"])
    if res["headline"] is not None:
        peak += f" {res['kind'] or '-'}"
    span = (
        "-"
        if res["low"] is None and res["high"] is None
        else (f"{mib(res['low'])}..{mib(res['high'])}")
    )
    in_range = "-" if row["in_range"] is None else ("yes" if row["in_range"] else "NO")
    return [
        row["workload"],
        row["interval"],
        num(truth["cpu_seconds"], ".2f"),
        num(res["cpu_seconds"], ".2f"),
        num(row["cpu_ratio"], ".3f"),
        num(row["naive_cpu_seconds"], ".2f"),
        mib(truth["rss_peak"]),
        mib(truth["pss_peak"]),
        mib(truth["ru_maxrss"]),
        peak,
        span,
        in_range,
        num(row["headline_ratio"], ".3f"),
    ]


def label(row: dict) -> str:
    return f"{row['workload']} at {row['interval']}"


def outside(row: dict) -> str:
    """Why a row's true peak is not inside resmon's range, and by how much."""
    true, low, high = row["true_same_kind"], row["resmon"]["low"], row["resmon"]["high"]
    if low is None or high is None:
        return "no range in the run summary"
    if true is None:
        return f"no true peak of kind {row['resmon']['kind'] or '-'}"
    edge, side = (low, "below low") if true < low else (high, "above high")
    return f"true {mib(true)} {side} {mib(edge)}, {(true / edge - 1) * 100:+.1f}%"


def targets(rows: list[dict]) -> list[dict]:
    """Each target: its name, pass, and the failing rows with why."""
    cpu_fail, range_fail, headline_fail = [], [], []
    for r in rows:
        ratio = r["cpu_ratio"]
        if ratio is None or abs(ratio - 1) > CPU_TOLERANCE:
            cpu_fail.append(f"{label(r)} ({num(ratio, '.3f')})")
        if not r["in_range"]:
            range_fail.append(f"{label(r)} ({outside(r)})")
        if r["interval"] == HEADLINE_INTERVAL:
            hl = r["headline_ratio"]
            if hl is None or abs(hl - 1) > HEADLINE_TOLERANCE:
                headline_fail.append(f"{label(r)} ({num(hl, '.3f')})")
    has_headline_rows = any(r["interval"] == HEADLINE_INTERVAL for r in rows)
    return [
        {"target": "CPU within 2% on every row", "pass": bool(rows) and not cpu_fail,
         "failing": cpu_fail},
        {"target": "true peak inside range on every row", "pass": bool(rows) and not range_fail,
         "failing": range_fail},
        {"target": "headline within 10% of true same-kind peak at 1 s on every row",
         "pass": has_headline_rows and not headline_fail,
         "failing": headline_fail if has_headline_rows else ["no row at 1s"]},
    ]  # fmt: skip


def wrapper_note(rows: list[dict]) -> str:
    own_rss = [r["truth"]["sampler"].get("wrapper_rss_peak_bytes") for r in rows]
    own_pss = [r["truth"]["sampler"].get("wrapper_pss_peak_bytes") for r in rows]
    own_cpu = [r["truth"]["wrapper_cpu_seconds"] for r in rows]
    own_rss = [v for v in own_rss if v is not None]
    own_pss = [v for v in own_pss if v is not None]
    own_cpu = [v for v in own_cpu if v is not None]
    if not own_rss:
        return "truth wrapper: no figures"
    return (
        "Both sides include the truth wrapper (one python process, measured in the same tree): "
        f"its RSS peak {min(own_rss) / MIB:.1f}-{max(own_rss) / MIB:.1f} MiB, "
        f"PSS {min(own_pss, default=0) / MIB:.1f}-{max(own_pss, default=0) / MIB:.1f} MiB, "
        f"CPU {min(own_cpu, default=0):.2f}-{max(own_cpu, default=0):.2f} s per run."
    )


def print_table(rows: list[dict], verdicts: list[dict], skipped: list[str]) -> None:
    widths = [(name, spec) for name, spec in COLUMNS]
    header = " ".join(format(name, spec) for name, spec in widths)
    print(header)
    print("-" * len(header))
    for r in rows:
        print(" ".join(format(c, spec) for c, (_, spec) in zip(cells(r), widths, strict=True)))
        notes = []
        if r["exit_code"] != 0:
            notes.append(f"exit code {r['exit_code']}")
        if r["truth"]["cpu_seconds"] is None:
            notes.append("no truth figures")
        if r["resmon"]["cpu_seconds"] is None:
            notes.append("no run summary")
        if notes:
            print(f"{'':16} ^ {', '.join(notes)}")
    print("\nMemory in MiB; CPU in seconds.", wrapper_note(rows))
    for line in skipped:
        print(line)
    print()
    for v in verdicts:
        print(f"{v['target']}: {'PASS' if v['pass'] else 'FAIL'}")
        for failing in v["failing"]:
            print(f"    {failing}")
