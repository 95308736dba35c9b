"""`vrm data check PATH [--format NAME]`: load a file or source and print what was kept and dropped."""

from __future__ import annotations

from pathlib import Path
import sys
from typing import TextIO

from vrm.data.local import LOCAL_FORMATS, load_local
from vrm.data.schema import DataError, DropReport
from vrm.data.sources import SOURCES, load_source

EXIT_OK = 0
EXIT_DATA_ERROR = 1
EXIT_USAGE_ERROR = 2


def format_report(report: DropReport) -> str:
    """Render a drop report as the lines `vrm data check` prints."""
    lines = [
        f"dataset: {report.dataset}",
        f"files: {len(report.files)}",
        f"rows read: {report.rows_read}",
        f"pairs kept: {report.pairs_kept}",
        f"dropped: {sum(report.dropped.values())}",
    ]
    lines.extend(f"  {reason}: {count}" for reason, count in sorted(report.dropped.items()))
    if report.notes:
        lines.append("notes:")
        lines.extend(f"  {note}: {count}" for note, count in sorted(report.notes.items()))
    return "\n".join(lines)


def check_source(name: str, path: Path) -> DropReport:
    """Load source `name` from a data root folder or from one of the source's files."""
    if name == "local":
        return load_local(path)[1]
    if path.is_dir():
        return load_source(name, data_root=path)[1]
    return load_source(name, files=[path])[1]


def check_main(path: str, fmt: str | None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run `vrm data check PATH [--format NAME]` and return the exit status.

    NAME is a registered source (PATH is then a data root folder or one of the source's
    files) or a generic format: jsonl, json or parquet. Without NAME the format comes from
    the file extension. Returns 0 on success, 1 when the data is malformed or missing (the
    message, with file and line, goes to stderr without a traceback) and 2 for an unknown
    NAME.
    """
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    target = Path(path)
    if fmt is not None and fmt not in SOURCES and fmt not in LOCAL_FORMATS:
        choices = ", ".join([*LOCAL_FORMATS, *SOURCES])
        print(f"error: unknown format {fmt!r}; expected one of {choices}", file=stderr)
        return EXIT_USAGE_ERROR
    try:
        if fmt in SOURCES:
            report = check_source(fmt, target)
        else:
            report = load_local(target, fmt)[1]
    except DataError as error:
        print(f"error: {error}", file=stderr)
        return EXIT_DATA_ERROR
    print(format_report(report), file=stdout)
    return EXIT_OK
