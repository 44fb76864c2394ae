"""Go's flag spellings for a click command: ``-interval=2s`` reads as ``--interval=2s``.

Go's ``flag`` package takes a flag with one dash or two, its value after ``=`` or as
the next argument, and a boolean as ``-flag`` or ``-flag=true|false``.  Manifests
written for the Go collector and receiver use those spellings, and click alone reads
``-interval=2s`` as the short options ``-i -n -t ...`` (``No such option '-i'``).

A command made with ``@click.command(cls=GoFlagCommand)`` reads its arguments by one
rule before click parses them: an argument ``-name`` or ``-name=value`` whose
``--name`` is a long option of the command is read as ``--name``.  Short options that
exist (``-o``, ``-h``) keep their meaning; an option's value (``-o -x``) is never
rewritten; and option parsing stops where click's does: at ``--``, and at the first
argument that is not an option when the command does not intersperse them.  So the
arguments of a wrapped command (``resmon collect -- make -j2``) are never touched.
A boolean switch also takes Go's ``=true`` / ``=false`` (either dash count).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import click

# strconv.ParseBool, which Go's flag package uses for a boolean flag's "=value".
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class GoFlagCommand(click.Command):
    """A click command that also reads Go's flag spellings (see the module docstring)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, go_spelling(ctx, self.get_params(ctx), args))

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        rows = go_spelling_examples(self.get_params(ctx))
        if rows:
            with formatter.section("Go flag spelling"):
                formatter.write_text(
                    "Every long option also reads with one dash, as Go's flag package and "
                    "manifests written for the Go tools spell it. Short options keep their "
                    "meaning; nothing after -- is rewritten."
                )
                formatter.write_paragraph()
                formatter.write_dl(rows)


def _options(params: Sequence[click.Parameter]) -> Iterator[tuple[str, click.Option]]:
    for param in params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                yield name, param


def _takes_value(option: click.Option) -> bool:
    return not option.is_flag and not option.count


def go_spelling(
    ctx: click.Context, params: Sequence[click.Parameter], args: list[str]
) -> list[str]:
    """``args`` with each Go-spelled option written as click reads it (the module's rule)."""
    names = dict(_options(params))
    out: list[str | None] = []
    switched_on: dict[str, list[int]] = {}  # a switch's places in out, for a later =false
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--" or arg == "-" or not arg.startswith("-"):
            if arg == "--" or not ctx.allow_interspersed_args:
                # The rest is not options: the wrapped command's arguments, say.
                out.extend(args[i - 1 :])
                break
            out.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if not name.startswith("--") and "-" + name in names:
            name = "-" + name
        option = names.get(name)
        if option is None:
            _unknown(ctx, name, names)
            out.append(arg)  # a short option with its value attached (-ofile), or click's error
            continue
        if option.is_bool_flag:
            spelling = _switch(ctx, option, name, value, arg) if eq else name
            if spelling is None:
                # Off, for a switch that has no off spelling: as Go, the last one wins.
                for place in switched_on.pop(option.name or name, []):
                    out[place] = None
            else:
                switched_on.setdefault(option.name or name, []).append(len(out))
                out.append(spelling)
            continue
        out.append(name + eq + value)
        if _takes_value(option) and not eq:
            # The value is the option's, whatever it looks like (-o -x, --name -build).
            out.extend(args[i : i + option.nargs])
            i += option.nargs
    return [arg for arg in out if arg is not None]


def _switch(
    ctx: click.Context, option: click.Option, name: str, value: str, arg: str
) -> str | None:
    """``-flag=true`` / ``-flag=false`` as click spells the switch (None: leave it out)."""
    if value in GO_TRUE:
        wanted = True
    elif value in GO_FALSE:
        wanted = False
    else:
        raise click.UsageError(
            f"{arg}: {name} is a switch; give it alone, or =true / =false", ctx=ctx
        )
    if name in option.secondary_opts:
        wanted = not wanted  # --no-samples=false is --samples
    if wanted:
        return option.opts[0]
    # Off: the switch's off spelling; a switch without one is off when left out.
    return option.secondary_opts[0] if option.secondary_opts else None


def _unknown(ctx: click.Context, name: str, names: dict[str, click.Option]) -> None:
    """A single-dash word that is no option: name it whole, not as its first letter.

    ``-ofile`` (a short option with its value attached) is left to click.
    """
    if ctx.ignore_unknown_options or name.startswith("--") or len(name) <= 2:
        return
    if name[:2] in names:
        return
    # click offers the closest long options ("Did you mean --interval?").
    raise click.NoSuchOption(name, possibilities=[n for n in names if n.startswith("--")], ctx=ctx)


def go_spelling_examples(params: Sequence[click.Parameter]) -> list[tuple[str, str]]:
    """Rows for ``--help``: Go spellings of the command's own first option and switch."""
    rows: list[tuple[str, str]] = []
    valued = next((n for n, o in _options(params) if n.startswith("--") and _takes_value(o)), None)
    if valued is not None:
        option = dict(_options(params))[valued]
        metavar = option.metavar or option.type.name.upper()
        rows.append((f"{valued[1:]}={metavar}", f"{valued}={metavar}"))
        rows.append((f"{valued[1:]} {metavar}", f"{valued} {metavar}"))
    switch = next(
        (n for n, o in _options(params) if n.startswith("--") and n != "--help" and o.is_bool_flag),
        None,
    )
    if switch is not None:
        option = dict(_options(params))[switch]
        off = f"{switch} / {option.secondary_opts[0]}" if option.secondary_opts else switch
        rows.append((f"{switch[1:]}, {switch[1:]}=true|false", off))
    return rows
