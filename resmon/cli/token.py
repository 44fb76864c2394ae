"""``resmon token``: mint a push token for one job's scope, or (``--read``) a read
token for one organisation.

Locally with the HMAC key, or through a server's mint endpoint; the scope is
checked first so a bad part is named by its option.  Keys and the read token
follow ``resmon serve``'s rules (verbatim, from files, 16 bytes at least).
"""

from __future__ import annotations

import click

from resmon.cli.go_flags import GoFlagCommand
from resmon.cli.serve import resolve_hmac_keys, resolve_read_token, warn_secrets_on_command_line


def _lifetime_option(ctx, param, value):
    if value is None:
        return None
    from resmon.mint import parse_lifetime

    try:
        return parse_lifetime(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(cls=GoFlagCommand)
@click.option(
    "--org",
    "organization",
    required=True,
    metavar="ORG",
    help="Organization (owner) of the repository.",
)
@click.option(
    "--repo",
    "repository",
    metavar="REPO",
    help="Repository, org/repo as CI reports it (or the bare name).  [required for a push token]",
)
@click.option("--workflow", metavar="NAME", help="Workflow name.  [required for a push token]")
@click.option("--job", metavar="NAME", help="Job name.  [required for a push token]")
@click.option(
    "--read",
    "read",
    is_flag=True,
    help="Mint a read token for --org instead: it reads that organisation's jobs and runs "
    "(API and web pages) and nothing else; never pushes.",
)
@click.option(
    "--expires",
    metavar="LIFETIME",
    callback=_lifetime_option,
    help="Mint a token that expires after this long (90d, 12h, 2w, 1d12h; 1m to 3660d): a "
    "v2 token, which only resmon verifies.  [default: never, a v1 token as the Go receiver's]",
)
@click.option(
    "--hmac-key",
    "hmac_keys",
    metavar="KEY",
    envvar="RECEIVER_HMAC_KEY",
    callback=lambda ctx, param, value: (value,) if value else (),
    help="Mint locally with this key, taken verbatim (16 bytes at least); prefer the "
    "variable or --hmac-key-file to the command line (visible in ps).  [env: "
    "RECEIVER_HMAC_KEY, one key; else the first of RESMON_HMAC_KEYS]",
)
@click.option(
    "--hmac-key-file",
    "hmac_key_files",
    multiple=True,
    metavar="PATH",
    type=click.Path(dir_okay=False),
    envvar="RESMON_HMAC_KEY_FILE",
    help="Mint locally with the key in this file (trailing newline dropped).  "
    "[env: RESMON_HMAC_KEY_FILE]",
)
@click.option(
    "--server",
    metavar="URL",
    help="Mint through this server (POST /api/v1/token), e.g. http://host:8080.",
)
@click.option(
    "--read-token",
    envvar="RECEIVER_READ_TOKEN",
    metavar="TOKEN",
    help="Read token of --server.  [env: RECEIVER_READ_TOKEN]",
)
@click.option(
    "--read-token-file",
    envvar="RESMON_READ_TOKEN_FILE",
    metavar="PATH",
    help="Read the read token of --server from this file.  [env: RESMON_READ_TOKEN_FILE]",
)
@click.pass_context
def token(ctx, organization, repository, workflow, job, read, expires, server, **secrets):
    """Mint a push token, or an organisation's read token.

    The token is HMAC-SHA256 over the scope with the server's key, signed over the
    repository exactly as given (like the Go receiver); the server accepts a push
    for either spelling, my-repo or my-org/my-repo.  With --expires the token
    carries its expiry (printed on stderr) and is refused from then on.

    With --read (and --org only) it is a read token of that organisation: the read
    API and the web pages show it that organisation's jobs and runs only.

    \b
    Examples:
      export RECEIVER_HMAC_KEY="$(cat /run/secrets/hmac_key)"
      resmon token --org my-org --repo my-org/my-repo --workflow ci.yml --job build
      resmon token --hmac-key-file=hmac.key --expires 90d --org my-org --repo my-org/my-repo \\
          --workflow ci.yml --job build
      RECEIVER_READ_TOKEN=... resmon token --server http://host:8080 --org my-org \\
          --repo my-org/my-repo --workflow ci.yml --job build
      resmon token --read --org my-org --expires 90d
    """
    from click.core import ParameterSource

    from resmon.mint import (
        MintError,
        ScopeError,
        check_organization,
        check_scope,
        expiry_after,
        mint_local,
        mint_read_local,
        mint_remote,
    )

    try:
        if read:
            given = [
                f"--{n}"
                for n, v in (("repo", repository), ("workflow", workflow), ("job", job))
                if v
            ]
            if given:
                raise click.UsageError(
                    f"a read token is for a whole organisation: drop {', '.join(given)}"
                )
            check_organization(organization)
        else:
            missing = [
                f"--{n}"
                for n, v in (("repo", repository), ("workflow", workflow), ("job", job))
                if v is None
            ]
            if missing:
                raise click.UsageError(
                    f"missing {', '.join(missing)} (a push token is for one job; --read mints "
                    "an organisation's read token)"
                )
            check_scope(organization, repository, workflow, job)
    except ScopeError as exc:
        option = {"organization": "--org", "repository": "--repo"}.get(exc.field, f"--{exc.field}")
        raise click.BadParameter(str(exc), param_hint=option) from None
    warn_secrets_on_command_line(ctx, {"read_token": "--read-token", "hmac_keys": "--hmac-key"})
    scope = (organization, repository, workflow, job)
    try:
        if server:
            local = [
                n
                for n in ("hmac_keys", "hmac_key_files")
                if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE
            ]
            if local:
                raise click.UsageError(
                    "give either --hmac-key/--hmac-key-file (mint locally) or --server, not both"
                )
            read_token = resolve_read_token(ctx, secrets["read_token"], secrets["read_token_file"])
            if read:
                result = mint_remote(
                    server, read_token or "", organization, expires_in=expires, kind="read"
                )
            else:
                result = mint_remote(server, read_token or "", *scope, expires_in=expires)
        else:
            keys = resolve_hmac_keys(ctx, secrets["hmac_keys"], secrets["hmac_key_files"])
            if not keys:
                raise click.UsageError(
                    "nothing to mint with: set RECEIVER_HMAC_KEY (or pass --hmac-key-file), "
                    "or --server URL with RECEIVER_READ_TOKEN"
                )
            expiry = None if expires is None else expiry_after(expires)
            if read:
                result = mint_read_local(keys, organization, expires=expiry)
            else:
                result = mint_local(keys, *scope, expires=expiry)
    except MintError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result)
    _echo_expiry(result)


def _echo_expiry(result: str) -> None:
    """On stderr, so that $(resmon token ...) captures the token alone."""
    import datetime as dt

    from resmon.tokens import parse_read_token, token_expiry

    parsed = parse_read_token(result)
    expiry = parsed[1] if parsed is not None else token_expiry(result)
    if expiry is not None:
        when = dt.datetime.fromtimestamp(expiry, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        click.echo(f"expires {when}", err=True)
