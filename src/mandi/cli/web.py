"""``mandi token``: API tokens for the REST/WebSocket gateway and the dashboard.

A token's secret is printed once, by ``create``, and only its SHA-256 is stored (in
``web.tokens_file``, by default ``~/.config/mandi/tokens.json``, mode 0600, outside the repo).
A running ``mandi run`` picks up new and revoked tokens within a second.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mandi.cli import ConfigOpt, app, fail, load
from mandi.core.errors import MandiError

token_app = typer.Typer(no_args_is_help=True, help="API tokens for the dashboard and the API.")
app.add_typer(token_app, name="token")

FileOpt = Annotated[str | None, typer.Option("--file", help="Tokens file (web.tokens_file).")]


def _store(config: str | None, file: str | None):  # type: ignore[no-untyped-def]
    from mandi.web.security import TokenStore

    cfg = load(config, {"web.tokens_file": file})
    return TokenStore(cfg.web.tokens_file)


@token_app.command("create")
def token_create(
    scope: Annotated[
        str,
        typer.Option(
            help="read (GETs and the WebSocket) or trade (also orders, cancel, halt/resume)."
        ),
    ] = "read",
    name: Annotated[str, typer.Option(help="A label, e.g. laptop or grafana.")] = "",
    config: ConfigOpt = None,
    file: FileOpt = None,
) -> None:
    """Create a token and print its secret once (store it in your password manager)."""
    try:
        store = _store(config, file)
        info, secret = store.create(scope, name)
    except MandiError as e:
        fail(e)
    typer.echo(secret)
    typer.echo(
        f"token {info.id} ({info.scope}) saved hashed in {store.path}; the secret above "
        "is shown only now",
        err=True,
    )


@token_app.command("list")
def token_list(
    config: ConfigOpt = None,
    file: FileOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List tokens (ids, names, scopes; never secrets)."""
    try:
        store = _store(config, file)
        tokens = [t.public() for t in store.tokens()]
    except MandiError as e:
        fail(e)
    if as_json:
        typer.echo(json.dumps(tokens, indent=2))
        return
    if not tokens:
        typer.echo(f"no tokens in {store.path} (mandi token create --scope read|trade)")
    for t in tokens:
        typer.echo(f"{t['id']}  {t['scope']:<5}  {t['created']}  {t['name']}")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The id shown by list.")],
    config: ConfigOpt = None,
    file: FileOpt = None,
) -> None:
    """Revoke a token (its sessions end too)."""
    try:
        store = _store(config, file)
        ok = store.revoke(token_id)
    except MandiError as e:
        fail(e)
    if not ok:
        fail(MandiError(f"no token with id {token_id!r}"))
    typer.echo(f"revoked {token_id}")


@token_app.command("link")
def token_link(
    token_id: Annotated[
        str | None, typer.Option("--id", help="The token to log in as (default: the owner's).")
    ] = None,
    ttl: Annotated[float | None, typer.Option(help="Seconds the link stays valid.")] = None,
    config: ConfigOpt = None,
    file: FileOpt = None,
) -> None:
    """Print a one-time login link for the running dashboard (works once; the node reads the
    tokens file, so no restart is needed)."""
    from mandi.web.layer import browser_url
    from mandi.web.security import TokenStore

    cfg = load(config, {"web.tokens_file": file, "web.login_link_ttl_s": ttl})
    try:
        store = TokenStore(cfg.web.tokens_file)
        if token_id is None:
            owner = store.owner()
            if owner is None:
                raise MandiError(
                    f"no owner token in {store.path} yet: `mandi run` creates it on its "
                    "first start (or pass --id of a token from `mandi token list`)"
                )
            token_id = owner.id
        elif not any(t.id == token_id for t in store.tokens()):
            fail(MandiError(f"no token with id {token_id!r}"))
        code = store.add_link(token_id, cfg.web.login_link_ttl_s)
    except MandiError as e:
        fail(e)
    typer.echo(f"{browser_url(cfg.run.host, cfg.run.port)}/?token={code}")
    typer.echo(
        f"works once, for {cfg.web.login_link_ttl_s / 60:g} min, as token {token_id}", err=True
    )
