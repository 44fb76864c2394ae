"""An installed wheel serves the pages: every template and static file under
resmon/web/ is named by pyproject.toml's package-data (no build step, no CDN)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "resmon" / "web"


def test_every_template_and_static_file_ships_in_the_wheel():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["resmon.web"]
    files = [
        p.relative_to(WEB)
        for folder in ("templates", "static")
        for p in (WEB / folder).rglob("*")
        if p.is_file()
    ]
    assert files
    unshipped = [str(f) for f in files if not any(f.match(pattern) for pattern in patterns)]
    assert unshipped == []


def test_the_vendored_chart_library_is_pinned_with_its_licence():
    import json

    vendor = WEB / "static" / "vendor" / "uplot"
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["uplot"]
    assert (vendor / "VERSION").read_text().strip() == pinned
    assert (
        "MIT" in (vendor / "LICENSE").read_text()
        or "Permission" in (vendor / "LICENSE").read_text()
    )
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 10_000
