"""The `<resource> <verb>` parser tree and the options every leaf shares."""

from __future__ import annotations

import argparse
from typing import Any

from workers.config.tokens import TOKEN_ENV as _TOKEN_ENV
from workers.tools.admin_cli.client import DEFAULT_TIMEOUT_S
from workers.tools.admin_cli.command import Handler

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "URL_ENV",
    "Tree",
    "dry_run_flag",
    "file_flag",
    "shadow_flag",
    "shared_options",
    "version_flag",
]

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "DCCGATE_ADMIN_URL"
TOKEN_ENV = _TOKEN_ENV


def shared_options(*, json_flag: bool = True, suppress: bool = True) -> argparse.ArgumentParser:
    """The shared options, accepted before and after the sub-command. Below `admin` they
    default to SUPPRESS, so a leaf does not overwrite what was given before it."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(
        "--url",
        dest="admin_url",
        metavar="URL",
        default=default(None),
        help=f"the admin API ({URL_ENV}, else {DEFAULT_URL})",
    )
    p.add_argument(
        "--token-env",
        dest="admin_token_env",
        metavar="NAME",
        default=default(TOKEN_ENV),
        help=f"environment variable holding the token ({TOKEN_ENV}); never the token itself",
    )
    if json_flag:
        p.add_argument(
            "--json",
            dest="admin_json",
            action="store_true",
            default=default(False),
            help="print the API's JSON answer instead of a table",
        )
    p.add_argument(
        "--timeout",
        dest="admin_timeout_s",
        type=float,
        metavar="SECONDS",
        default=default(DEFAULT_TIMEOUT_S),
        help=f"seconds to wait for an answer ({DEFAULT_TIMEOUT_S:g})",
    )
    return p


def version_flag(p: argparse.ArgumentParser, what: str = "PUT") -> None:
    p.add_argument(
        "--version",
        type=int,
        metavar="N",
        help=f"{what} only if the item is still at version N (else HTTP 409)",
    )


def dry_run_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run",
        dest="admin_dry_run",
        action="store_true",
        help="answer what would change (checked by the API, version included); write nothing",
    )


def shadow_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--shadow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"shadow mode: {what}; --no-shadow enforces (unchanged if neither)",
    )


def file_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--file",
        required=True,
        metavar="F",
        help=f"{what}: JSON, or TOML if F ends in .toml; - reads JSON from stdin",
    )


class Tree:
    """Builds `<resource> <verb>` parsers, each leaf with the shared options."""

    def __init__(self, sub: Any) -> None:
        self.top = sub
        self._parent = shared_options()
        self._parent_no_json = shared_options(json_flag=False)

    def resource(self, name: str, help_text: str) -> Any:
        p = self.top.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        return p.add_subparsers(dest="admin_verb", required=True, metavar="VERB")

    def leaf(
        self, sub: Any, name: str, handler: Handler, help_text: str, *, json_flag: bool = True
    ) -> argparse.ArgumentParser:
        parent = self._parent if json_flag else self._parent_no_json
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text, parents=[parent], allow_abbrev=False
        )
        p.set_defaults(admin_handler=handler)
        return p
