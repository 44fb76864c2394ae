"""What names a run and where it keeps its spool: needed from the start of every run,
so kept apart from the modules only streaming or the exit path import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def default_spool_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/resmon/spool``, else ``~/.local/state/resmon/spool``."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME", "").strip()
    base = Path(state) if state else Path.home() / ".local" / "state"
    return base / "resmon" / "spool"


def new_run_key() -> str:
    """A uuid4, the run's key in live batches and in the final push."""
    import uuid  # click has it loaded already

    return str(uuid.uuid4())


def runner_host(env: Mapping[str, str] | None = None) -> str:
    """``RUNNER_NAME`` (GitHub and Forgejo runners set it), else the hostname."""
    name = (os.environ if env is None else env).get("RUNNER_NAME") or ""
    # os.uname().nodename is gethostname(2) without importing socket.
    return name.strip() or os.uname().nodename


def spool_holds_something(spool_dir: Path | None) -> bool:
    """Whether earlier runs may have left something (a payload, a leftover to tidy): on
    a fresh runner the spool does not exist, and the spool's modules and the start-up
    delivery's thread are not needed."""
    if spool_dir is None:
        return False
    try:
        return any(name != "quarantine" for name in os.listdir(spool_dir))
    except FileNotFoundError:
        return False
    except OSError:
        return True  # the spool says why, in its own words
