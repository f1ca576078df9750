"""Writing and reading load-test reports: report.json and report.html, and the what-if pair.

`write_report` writes both files of a run; `load_report` reads report.json back with a strict
decode; `compare` and `write_whatif` (whatif.py) set two runs of the same scenario side by
side.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from workers.tools.loadtest.output import encode_json, write_atomically
from workers.tools.loadtest.page import render_report
from workers.tools.loadtest.report_schema import REPORT_FORMAT, LoadTestReport, ReportError
from workers.tools.loadtest.whatif import compare, write_whatif

__all__ = ["compare", "load_report", "write_report", "write_whatif"]

_DECODER = msgspec.json.Decoder(LoadTestReport)
_MAX_REPORT_BYTES = 256 * 1024 * 1024
"""A report is bounded (buckets, labels, events: a few MB); a larger file is not one."""


def write_report(report: LoadTestReport, directory: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into `directory` (created if missing).

    Returns:
        The paths of report.json and report.html.
    """
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    write_atomically(json_path, encode_json(report))
    write_atomically(html_path, render_report(report).encode("utf-8"))
    return json_path, html_path


def load_report(path: Path) -> LoadTestReport:
    """Read a report.json written by `write_report`.

    Raises:
        ReportError: the file is missing, not JSON, not a report, or of another format
            version; the message names the file and what to do.
    """
    try:
        size = path.stat().st_size
        if size > _MAX_REPORT_BYTES:
            raise ReportError(
                f"{path} is {size:,} bytes, more than any load-test report; pass the "
                "report.json that `dccgate loadtest --report DIR` wrote"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(
            f"cannot read the load-test report {path}: {exc.strerror}; pass the report.json "
            "that `dccgate loadtest --report DIR` wrote"
        ) from exc
    try:
        report = _DECODER.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ReportError(
            f"{path} is not a dccgate load-test report ({exc}); pass the report.json that "
            "`dccgate loadtest --report DIR` wrote"
        ) from exc
    if not (0 < report.bucket_s < 1e9 and 0 <= report.elapsed_s < 1e9):
        raise ReportError(
            f"{path} is not a dccgate load-test report (bucket_s {report.bucket_s!r}, "
            f"elapsed_s {report.elapsed_s!r} are out of range); pass the report.json that "
            "`dccgate loadtest --report DIR` wrote"
        )
    if report.format != REPORT_FORMAT:
        raise ReportError(
            f"{path} has report format {report.format!r}, this dccgate reads {REPORT_FORMAT!r}; "
            "run the scenario again with this version"
        )
    return report
