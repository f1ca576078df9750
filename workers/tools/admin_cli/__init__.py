"""`dccgate admin`: the admin HTTP API at a terminal, for operators and Users, with tables.

Usage
-----

Point the command at the gateway's HTTP port and give it a token::

    export DCCGATE_ADMIN_URL=http://127.0.0.1:8080   # the default
    export DCCGATE_TOKEN=dcg_...                      # an operator or a User token
    dccgate admin users list

The token is read from the environment only (`DCCGATE_TOKEN`, or the variable named by
`--token-env NAME`), never from a flag, so it does not land in shell history or `ps`. With
`dccgate run`, the first operator token is the one in `DCCGATE_TOKEN` when it started, or
the one it made up and printed. `DCCGATE_ADMIN_TOKEN`, the former name, is still read when
`DCCGATE_TOKEN` is not set, with a warning.

Options (before or after the sub-command):

    --url URL          the admin API (DCCGATE_ADMIN_URL, else http://127.0.0.1:8080)
    --token-env NAME   the environment variable holding the token (DCCGATE_TOKEN)
    --json             print the API's JSON answer instead of a table (every command)
    --timeout S        seconds to wait for an answer (10)

Every `set`, `add` and `remove` (and `quarantine release|delete` with filters) takes
`--dry-run`: what would change, checked by the API, nothing written. Times print as ISO
8601 UTC; a time asked for (`--from`, `--to`, `--since`, `--until`) is a duration back from
now (`30m`, `1h`, `2d`) or an ISO 8601 time (`workers.tools.times`).

Sub-commands read `dccgate admin <resource> <verb> [args]`:

    users list
    users get USER_ID
    users set USER_ID [--name NAME] [--roles IS,GS] [--version N]
              [--response-url URL | --no-response-url]
    users delete USER_ID [--version N]
    tokens issue USER_ID                  prints the secret once: store it now
    tokens list USER_ID
    tokens revoke USER_ID TOKEN_ID
    tokens issue-operator
    tokens list-operators
    tokens revoke-operator TOKEN_ID
    allocations get USER_ID
    allocations set USER_ID [--rate R] [--burst B] [--shadow|--no-shadow] [--version N]
    traffic get
    traffic set [--capacity C] [--threshold T] [--reserved 2.2,7.1] [--reserved-share S]
                [--shadow|--no-shadow] [--default-rate R] [--default-burst B]
                [--no-default-allocation] [--exit-margin-ratio R] [--exit-hold-s S]
                [--version N]
    adt get USER_ID|dcc
    adt set USER_ID|dcc --file values.json|values.toml|- [--version N]
    exclusions get
    exclusions set CODE[,CODE...] [--version N]
    exclusions add CODE[,CODE...]
    exclusions remove CODE[,CODE...]
    storm-policy get
    storm-policy set --file policy.json|policy.toml|- [--version N]
    quarantine list [--user USER_ID] [--rule R] [--kind K] [--state S] [--from T] [--to T]
                    [--limit N]
    quarantine release REQUEST_ID | [--user USER_ID] [--rule R] [--kind K] [--from T]
                                    [--to T] [--limit N]
    quarantine delete  REQUEST_ID | (the same filters)
    quarantine release|delete (filters) --dry-run   the pending requests it would decide
    config show [--key PREFIX]            every item in force, its source and version
    audit [--limit N] [--key-prefix P] [--by WHO] [--since WHEN] [--until WHEN]
          [--since-ms MS] [--until-ms MS]
    get PATH                              any GET, e.g. `get /openapi.json`; prints JSON
    put PATH (--json '{...}' | --file F)  any PUT; `post` and `delete PATH` likewise

A PATH without a leading `/` is under `/v1/` (`get users` is `GET /v1/users`).

Changing only some fields never clobbers another operator's change: a `set` with flags
(`users`, `allocations`, `traffic`) and `exclusions set|add|remove` first GET the item,
change the fields given, and PUT with the version they read; if someone changed it in
between, the API refuses with 409 and you run the command again. `--version N` sends your
own version instead. A `set --file` replaces the whole item (with `--version N`, only if
it is still at version N). A file is TOML if its name ends in `.toml`, else JSON; it holds
the body itself, e.g. for `adt set`::

    thresholds = [{ srv = "7.2", window_s = 3600, max = 500 }]
    value_rules = [{ srv = "2.2", field = "amount", min = 0, max = 500 }]

`tokens issue` writes the secret alone on stdout (so `T=$(dccgate admin tokens issue ID)`
works) and its details and a warning on stderr: the secret is stored nowhere and cannot be
shown again, only revoked and reissued.


The package: `transport` (one HTTP request), `client` (JSON over it), `formatting` (tables),
`command` (what handlers share), `tree` (the parser tree and its shared options), one module
per command group (`users`, `tokens`, `allocations`, `traffic`, `adt`, `exclusions`, `storm`,
`config`, `quarantine`, `audit`, `raw`, ...), `parser` (all of them) and `entry`
(`run_admin`).
"""

from workers.tools.admin_cli.client import AdminClient
from workers.tools.admin_cli.cmd_exclusions import add_codes, remove_codes
from workers.tools.admin_cli.cmd_raw import api_path
from workers.tools.admin_cli.cmd_traffic import traffic_changes
from workers.tools.admin_cli.entry import run_admin
from workers.tools.admin_cli.errors import AdminCliError, ApiAnswerError, TransportError
from workers.tools.admin_cli.formatting import (
    cell,
    dict_table,
    format_fields,
    format_table,
    iso_ms,
    merge,
)
from workers.tools.admin_cli.parser import add_admin_parser
from workers.tools.admin_cli.transport import Transport, urllib_transport
from workers.tools.admin_cli.tree import DEFAULT_URL, TOKEN_ENV, URL_ENV

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "URL_ENV",
    "AdminCliError",
    "AdminClient",
    "ApiAnswerError",
    "Transport",
    "TransportError",
    "add_admin_parser",
    "add_codes",
    "api_path",
    "cell",
    "dict_table",
    "format_fields",
    "format_table",
    "iso_ms",
    "merge",
    "remove_codes",
    "run_admin",
    "traffic_changes",
    "urllib_transport",
]
