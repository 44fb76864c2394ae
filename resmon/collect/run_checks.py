"""What the end of a run says about it: its budgets, and the server's comparison.

Two moments of the exit path (:meth:`resmon.collect.collector.Collector._finish`):

- :meth:`RunChecks.before_push`, right after the run summary is built: the static
  budgets are checked and go into the summary (``budgets``), so they are on disk,
  in the Markdown and in the pushed payload; each is logged and, on GitHub or
  Forgejo, said as a workflow command on stdout;
- :meth:`RunChecks.after_push`, with the server's answer: its comparison with the
  job's baseline and the baseline budgets, appended to the Markdown job summary and
  logged (the summary is already on disk: nothing here delays or loses the push).

:meth:`RunChecks.exit_code` is the one place a budget changes the exit code:
``--budget-action fail`` in wrapper mode, a budget exceeded and the command's own
exit code 0 (a failing command's code always wins).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from resmon.collect.budgets import (
    BUDGET_EXIT_CODE,
    EXCEEDED,
    NOT_CHECKED,
    Budget,
    check,
    check_baseline,
    describe,
    markdown_lines,
    workflow_command,
)
from resmon.collect.logging_setup import log_fields

log = logging.getLogger("resmon.collect.budgets")


class RunChecks:
    """The budgets of one run and what the server said of it."""

    def __init__(
        self,
        budgets: list[Budget],
        *,
        fail: bool = False,
        workflow_commands: bool = False,
        markdown_file: Path | None = None,
        pushing: bool = False,
    ) -> None:
        self.budgets = budgets
        self.fail = fail
        self.workflow_commands = workflow_commands
        self.markdown_file = markdown_file
        self.pushing = pushing
        self.results: list[dict[str, Any]] = []

    @classmethod
    def of(cls, config: Any) -> RunChecks:
        """The checks a :class:`~resmon.collect.collector.CollectConfig` asks for."""
        return cls(
            list(config.budgets),
            fail=config.budget_action == "fail",
            workflow_commands=config.workflow_commands,
            markdown_file=config.markdown_file,
            pushing=bool(config.push_endpoint),
        )

    @property
    def exceeded(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r.get("status") == EXCEEDED]

    def before_push(self, summary: dict[str, Any]) -> None:
        """Check the static budgets; their results go into ``summary["budgets"]``."""
        static = [check(b, summary) for b in self.budgets if not b.is_baseline]
        if not static:
            return
        summary["budgets"] = static
        self._say(static)

    def after_push(self, summary: Mapping[str, Any], response: Any, delivered: bool) -> None:
        """The comparison in the push's answer, and the baseline budgets against it."""
        from resmon.collect.comparison import comparison_lines, markdown_section, parse_comparison

        comparison = parse_comparison(response) if delivered else None
        if comparison is not None:
            flagged = comparison.flagged
            for line in comparison_lines(comparison):
                if flagged:
                    log.warning("regression: %s", line)
                else:
                    log.info("against the job's baseline: %s", line)
        if not self.pushing:
            why = "the run is not pushed (no --push-endpoint)"
        elif not delivered:
            why = "the push was not answered in time"
        else:
            why = "the server's answer has no comparison"
        baseline = [
            check_baseline(b, summary, comparison, why) for b in self.budgets if b.is_baseline
        ]
        self._say(baseline)
        if self.markdown_file is None or (comparison is None and not baseline):
            return
        from resmon.collect.report import append_markdown

        try:
            append_markdown(
                self.markdown_file, markdown_section(comparison, markdown_lines(baseline))
            )
        except OSError as exc:
            log.error("cannot write the Markdown summary to %s: %s", self.markdown_file, exc)

    def _say(self, results: list[dict[str, Any]]) -> None:
        """Log each result, and on GitHub/Forgejo say it as a workflow command."""
        self.results += results
        for result in results:
            text = describe(result)
            fields = log_fields(budget=result)
            if result["status"] == EXCEEDED:
                log.log(logging.ERROR if self.fail else logging.WARNING, text, extra=fields)
            elif result["status"] == NOT_CHECKED:
                log.warning(text, extra=fields)
            else:
                log.info(text, extra=fields)
            line = workflow_command(result, self.fail) if self.workflow_commands else None
            if line is not None:
                try:
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                except (OSError, ValueError) as exc:  # a closed stdout costs the line only
                    log.debug("cannot write the workflow command: %s", exc)

    def exit_code(self, command_code: int, *, wrapper: bool) -> int:
        """The run's exit code: the command's, unless ``fail`` and a budget was exceeded
        while the command succeeded (wrapper mode only)."""
        exceeded = self.exceeded
        if not self.fail or not exceeded:
            return command_code
        if not wrapper:
            log.warning(
                "%d budget(s) exceeded; --budget-action fail changes the exit code in "
                "wrapper mode only: exit code 0",
                len(exceeded),
            )
            return command_code
        if command_code != 0:
            return command_code
        log.error(
            "%d budget(s) exceeded (--budget-action fail): exit code %d, the command's was 0",
            len(exceeded),
            BUDGET_EXIT_CODE,
            extra=log_fields(budgets=[r["expr"] for r in exceeded]),
        )
        return BUDGET_EXIT_CODE
