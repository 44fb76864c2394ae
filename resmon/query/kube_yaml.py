"""``resmon query recommend -o yaml``: a Kubernetes ``resources:`` block per container,
ready to paste into a runner's pod template.

Written by hand (the block is small and fixed), quantities as Kubernetes spells them:
CPU in millicores (``"1500m"``), memory in ``Mi``, or ``Gi`` when it is a whole
number of them; every quantity quoted, so YAML never reads one as a number.  A
container without a recommendation (fewer than 3 runs) is a comment saying how many
more runs it needs; a CPU limit advised against is left out, with the reason as a
comment.  A job whose runs have no containers gets one entry named after the job.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

MIB = 1024 * 1024


def cpu_quantity(cores: float) -> str:
    return f"{max(1, math.ceil(cores * 1000 - 1e-6))}m"


def memory_quantity(size: float) -> str:
    mib = max(1, math.ceil(size / MIB - 1e-9))
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _comment(text: Any) -> str:
    # One line: a name or reason with a newline must not end the comment.
    return " ".join(str(text).split())


def _quoted(name: str) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(name, ensure_ascii=False)


def _entry(name: str, rec: Mapping[str, Any], indent: str) -> list[str]:
    if rec.get("status") != "ok":
        return [f"{indent}# {_comment(name)}: {_comment(rec.get('message', 'no recommendation'))}"]
    lines = [f"{indent}- name: {_quoted(name)}", f"{indent}  resources:"]
    requests = []
    if rec.get("cpu_request_cores") is not None:
        requests.append(f'cpu: "{cpu_quantity(rec["cpu_request_cores"])}"')
    if rec.get("memory_request_bytes") is not None:
        requests.append(f'memory: "{memory_quantity(rec["memory_request_bytes"])}"')
    limits = []
    if rec.get("cpu_limit_cores") is not None:
        limits.append(f'cpu: "{cpu_quantity(rec["cpu_limit_cores"])}"')
    if rec.get("memory_limit_bytes") is not None:
        limits.append(f'memory: "{memory_quantity(rec["memory_limit_bytes"])}"')
    for title, items in (("requests", requests), ("limits", limits)):
        if items:
            lines.append(f"{indent}    {title}:")
            lines.extend(f"{indent}      {item}" for item in items)
    if rec.get("cpu_limit_advice") == "none" and rec.get("cpu_limit_reason"):
        lines.append(f"{indent}    # no CPU limit: {_comment(rec['cpu_limit_reason'])}")
    return lines


def resources_yaml(body: Mapping[str, Any]) -> str:
    """The YAML text for a job's recommendation (the read API's answer)."""
    job = body.get("job_recommendation") or {}
    scope = " · ".join(str(body.get(k, "")) for k in ("repository", "workflow", "job"))
    confidence = (job.get("confidence") or {}).get("level", "none")
    lines = [
        f"# resmon: requests and limits for {_comment(scope)}",
        f"# from {job.get('runs', 0)} runs since {body.get('since')}; confidence {confidence}",
        "containers:",
    ]
    containers = body.get("containers") or []
    if containers:
        for c in containers:
            lines.extend(_entry(str(c.get("name", "")), c, "  "))
    else:
        lines.extend(_entry(str(body.get("job", "job")), job, "  "))
    if not any(line.lstrip().startswith("- name:") for line in lines):
        lines[2] = "containers: []"  # nothing to paste yet; the comments say why
    return "\n".join(lines) + "\n"
