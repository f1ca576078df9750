"""`dccgate admin` runs: the URL and token checked, the handler called, errors reported."""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.parse
from collections.abc import Mapping
from typing import TextIO

from workers.config.tokens import token_from_env
from workers.tools.admin_cli.client import AdminClient
from workers.tools.admin_cli.command import PROG, Ctx, Handler
from workers.tools.admin_cli.errors import AdminCliError, ApiAnswerError
from workers.tools.admin_cli.transport import Transport, urllib_transport
from workers.tools.admin_cli.tree import DEFAULT_URL, TOKEN_ENV, URL_ENV

__all__ = ["run_admin"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _check_url(url: str, err: TextIO) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AdminCliError(
            f"--url / {URL_ENV} must look like http://HOST:PORT, got {url!r}", exit_code=2
        )
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        err.write(f"{PROG}: warning: the token goes to {parts.hostname} over plain HTTP\n")
    return url


def _token(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    name = getattr(args, "admin_token_env", TOKEN_ENV)
    if name.startswith("dcg_") or not _ENV_NAME.fullmatch(name):
        # Not echoed: it may be the secret itself, given where its name belongs.
        raise AdminCliError(
            "--token-env takes the NAME of an environment variable (like DCCGATE_TOKEN), "
            "never the token itself",
            exit_code=2,
        )
    token = token_from_env(environ) if name == TOKEN_ENV else environ.get(name, "").strip()
    if not token:
        hint = (
            " (with `dccgate run`, the operator token it printed, or the one you set in "
            f"{TOKEN_ENV} before starting it)"
            if name == TOKEN_ENV
            else ""
        )
        raise AdminCliError(f"no token: set {name} to an operator or User token{hint}", exit_code=2)
    return token


def run_admin(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    transport: Transport | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the `dccgate admin` sub-command parsed into `args`; returns the exit code.

    environ, transport, stdout, stderr, stdin: defaults are the process's own (tests
    inject theirs).
    """
    env = os.environ if environ is None else environ
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    try:
        url = _check_url(args.admin_url or env.get(URL_ENV) or DEFAULT_URL, err)
        timeout_s = float(args.admin_timeout_s)
        if not timeout_s > 0:
            raise AdminCliError("--timeout must be a positive number of seconds", exit_code=2)
        client = AdminClient(
            url,
            _token(args, env),
            timeout_s=timeout_s,
            transport=transport or urllib_transport,
        )
        ctx = Ctx(
            client=client,
            out=out,
            err=err,
            stdin=sys.stdin if stdin is None else stdin,
            as_json=bool(getattr(args, "admin_json", False)),
            dry_run=bool(getattr(args, "admin_dry_run", False)),
        )
        handler: Handler = args.admin_handler
        return handler(ctx, args)
    except ApiAnswerError as exc:
        where = f" (the token in {args.admin_token_env})" if exc.status == 401 else ""
        err.write(f"{PROG}: {exc.message}{where}\n")
        return exc.exit_code
    except AdminCliError as exc:
        err.write(f"{PROG}: {exc.message}\n")
        return exc.exit_code
