"""``resmon token``: mint a push token for one job's scope.

Locally with the HMAC key, or through a server's mint endpoint; the scope is
checked first so a bad part is named by its option.
"""

from __future__ import annotations

import click


@click.command()
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
    required=True,
    metavar="REPO",
    help="Repository, org/repo as CI reports it (or the bare name).",
)
@click.option("--workflow", required=True, metavar="NAME", help="Workflow name.")
@click.option("--job", required=True, metavar="NAME", help="Job name.")
@click.option(
    "--hmac-key",
    envvar="RECEIVER_HMAC_KEY",
    metavar="KEY",
    help="Mint locally with this key.  [env: RECEIVER_HMAC_KEY; of a list, the first]",
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
@click.pass_context
def token(ctx, organization, repository, workflow, job, hmac_key, server, read_token):
    """Mint a push token scoped to org/repo/workflow/job and print it.

    The token is HMAC-SHA256 over the scope with the server's key, signed over the
    repository exactly as given (like the Go receiver); the server accepts a push
    for either spelling, my-repo or my-org/my-repo.

    \b
    Examples:
      resmon token --hmac-key=$KEY --org my-org --repo my-org/my-repo --workflow ci.yml --job build
      resmon token --server http://host:8080 --read-token=$READ --org my-org --repo my-org/my-repo \\
          --workflow ci.yml --job build
    """
    from click.core import ParameterSource

    from resmon.mint import MintError, ScopeError, check_scope, mint_local, mint_remote
    from resmon.tokens import split_keys

    try:
        check_scope(organization, repository, workflow, job)
    except ScopeError as exc:
        option = {"organization": "--org", "repository": "--repo"}.get(exc.field, f"--{exc.field}")
        raise click.BadParameter(str(exc), param_hint=option) from None
    try:
        if server:
            if ctx.get_parameter_source("hmac_key") == ParameterSource.COMMANDLINE:
                raise click.UsageError(
                    "give either --hmac-key (mint locally) or --server, not both"
                )
            result = mint_remote(server, read_token or "", organization, repository, workflow, job)
        elif hmac_key:
            result = mint_local(split_keys(hmac_key), organization, repository, workflow, job)
        else:
            raise click.UsageError(
                "nothing to mint with: pass --hmac-key (or set RECEIVER_HMAC_KEY), "
                "or --server URL with --read-token"
            )
    except MintError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result)
