"""Read JSON, JSON Lines and Parquet files into records that remember where they came from.

Every problem is raised as DataFormatError naming the file and the 1-based line (or the
record index where a line is not known), with a fix the user can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
import gzip
import json
from pathlib import Path
import re
from typing import Any

from vrm.data.schema import DataFormatError

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_UTF8_FIX = "Convert the file to UTF-8 or remove the invalid byte"
_JSONL_FIX = "Each line must hold one complete JSON object; fix or remove this line"
_JSON_FIX = "Fix the JSON syntax at this line (a JSON validator such as `python -m json.tool FILE` shows it)"
_FIELD_FIX = "Add the field to the record, or check that the file is in the format you selected"
_TYPE_FIX = "Correct the value in the file, or check that the file is in the format you selected"


@dataclass(frozen=True)
class Record:
    """One JSON object of a file, with its 1-based line (None when unknown) and 0-based index."""

    data: dict
    path: str
    line: int | None
    index: int
    label: str = "record"

    def describe(self) -> str:
        """Name the record for messages, for example "record 4" or "row 12 (counting from 0)"."""
        if self.label == "row" and self.line is None:
            return f"row {self.index} (counting from 0)"
        return f"{self.label} {self.index}"


def json_type_name(value: Any) -> str:
    """Name the JSON type of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# Every data file read in this process, for the results' manifest (vrm.manifest).
FILES_READ: set[str] = set()


def note_file_read(path: str | Path) -> None:
    """Add a data file to FILES_READ."""
    FILES_READ.add(str(Path(path).resolve()))


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataFormatError(path, None, "file not found", "Check the path")
    note_file_read(path)
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read()
        except (OSError, EOFError) as error:
            raise DataFormatError(
                path, None, f"invalid gzip data ({error})", "Download or compress the file again"
            ) from error
    return path.read_bytes()


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file (gzip-compressed when its name ends in .gz).

    Raises DataFormatError on invalid UTF-8, naming the line of the first invalid byte, and
    on a file that is empty or holds only whitespace. A leading byte order mark is removed.
    """
    path = Path(path)
    raw = _read_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        line_start = raw.rfind(b"\n", 0, error.start) + 1
        column = error.start - line_start + 1
        bad_byte = raw[error.start]
        raise DataFormatError(
            path, line, f"invalid UTF-8: byte 0x{bad_byte:02x} at column {column}", _UTF8_FIX
        ) from error
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataFormatError(path, None, "empty file", "Check that the file was written completely")
    return text


def _json_error(path: Path, error: json.JSONDecodeError, fix: str, line_offset: int = 0) -> DataFormatError:
    line = error.lineno + line_offset
    return DataFormatError(path, line, f"invalid JSON: {error.msg} at column {error.colno}", fix)


def read_jsonl(path: str | Path) -> list[Record]:
    """Read a JSON Lines file (also .gz) into records, one JSON object per non-blank line."""
    path = Path(path)
    text = read_text(path)
    records = []
    # Split on "\n" only: str.splitlines would also split at U+2028 and other separators that
    # are valid inside JSON strings, which would shift line numbers and break records.
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise _json_error(path, error, _JSONL_FIX, line_offset=line_number - 1) from error
        if not isinstance(value, dict):
            raise DataFormatError(
                path, line_number, f"expected a JSON object, found {json_type_name(value)}", _JSONL_FIX
            )
        records.append(Record(value, str(path), line_number, len(records)))
    return records


def read_json(path: str | Path) -> Any:
    """Read a whole JSON document; invalid JSON is reported at the line the decoder names."""
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _json_error(path, error, _JSON_FIX) from error


def _scan_top_level_array(text: str) -> list[tuple[int, Any]] | None:
    """Decode a JSON array element by element, returning (start offset, value) pairs.

    Returns None when the document is not an array. Raises json.JSONDecodeError with the
    offset of the first syntax error, so its line number is that of the whole document.
    """
    decoder = json.JSONDecoder()
    position = _WHITESPACE.match(text, 0).end()
    if position >= len(text) or text[position] != "[":
        return None
    position = _WHITESPACE.match(text, position + 1).end()
    items: list[tuple[int, Any]] = []
    if position < len(text) and text[position] == "]":
        position += 1
    else:
        while True:
            value, end = decoder.raw_decode(text, position)
            items.append((position, value))
            position = _WHITESPACE.match(text, end).end()
            if position < len(text) and text[position] == ",":
                position = _WHITESPACE.match(text, position + 1).end()
                continue
            if position < len(text) and text[position] == "]":
                position += 1
                break
            raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
    position = _WHITESPACE.match(text, position).end()
    if position != len(text):
        raise json.JSONDecodeError("Extra data", text, position)
    return items


def read_json_records(path: str | Path) -> list[Record]:
    """Read a JSON document that is a list of objects; each record keeps its starting line."""
    path = Path(path)
    text = read_text(path)
    try:
        items = _scan_top_level_array(text)
        if items is None:
            document = json.loads(text)
    except json.JSONDecodeError as error:
        raise _json_error(path, error, _JSON_FIX) from error
    if items is None:
        raise DataFormatError(
            path,
            1,
            f"expected a JSON list of records, found {json_type_name(document)}",
            "Use a file whose top level is a list of objects, or JSON Lines with --format jsonl",
        )
    if not items:
        raise DataFormatError(path, 1, "the JSON list contains no records", "Check that the file was written completely")

    records = []
    line = 1
    previous = 0
    for index, (offset, value) in enumerate(items):
        # Count newlines since the previous record only, so finding all lines is linear.
        line += text.count("\n", previous, offset)
        previous = offset
        if not isinstance(value, dict):
            raise DataFormatError(
                path, line, f"record {index} is {json_type_name(value)}, expected a JSON object", _JSON_FIX
            )
        records.append(Record(value, str(path), line, index))
    return records


def read_parquet_records(path: str | Path) -> list[Record]:
    """Read a Parquet file into records; each record names its 0-based row."""
    import pyarrow
    import pyarrow.parquet

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "file not found", "Check the path")
    note_file_read(path)
    if path.stat().st_size == 0:
        raise DataFormatError(path, None, "empty file", "Check that the file was written completely")
    try:
        table = pyarrow.parquet.read_table(path)
    except (pyarrow.ArrowException, OSError) as error:
        raise DataFormatError(
            path, None, f"invalid Parquet file ({error})", "Write the file again with a Parquet writer"
        ) from error
    if table.num_rows == 0:
        raise DataFormatError(path, None, "the Parquet file contains no rows", "Check that the file was written completely")
    return [Record(row, str(path), None, index, label="row") for index, row in enumerate(table.to_pylist())]


def records_from_list(values: Any, path: str | Path, field: str) -> list[Record]:
    """Wrap the list stored under `field` of a JSON document as records labelled "field[i]".

    Lines are not tracked inside nested lists, so messages name the index only.
    """
    if not isinstance(values, list):
        raise DataFormatError(
            path, None, f"field {field!r} is {json_type_name(values)}, expected a list of objects", _FIELD_FIX
        )
    records = []
    for index, value in enumerate(values):
        if not isinstance(value, dict):
            raise DataFormatError(
                path, None, f"{field}[{index}] is {json_type_name(value)}, expected an object", _FIELD_FIX
            )
        records.append(Record(value, str(path), None, index, label=field))
    return records


def format_error(record: Record, message: str, fix: str = _TYPE_FIX) -> DataFormatError:
    """Build a DataFormatError about one record, naming its file, line and index."""
    return DataFormatError(record.path, record.line, f"{record.describe()}: {message}", fix)


def require_field(record: Record, field: str) -> Any:
    """Return the value of `field`, raising DataFormatError when the record lacks it."""
    if field not in record.data:
        raise format_error(record, f"missing field {field!r}", _FIELD_FIX)
    return record.data[field]


def require_type(record: Record, field: str, types: type | tuple[type, ...], expected: str) -> Any:
    """Return the value of `field` after checking it is one of `types` (`expected` names them).

    A JSON boolean is never accepted as a number, although bool is a subclass of int.
    """
    value = require_field(record, field)
    accepted = types if isinstance(types, tuple) else (types,)
    is_bool_for_number = isinstance(value, bool) and bool not in accepted
    if not isinstance(value, accepted) or is_bool_for_number:
        raise format_error(record, f"field {field!r} is {json_type_name(value)}, expected {expected}", _TYPE_FIX)
    return value


def require_str(record: Record, field: str) -> str:
    """Return the string value of `field`, raising DataFormatError when missing or not a string."""
    return require_type(record, field, str, "a string")


def optional_str(record: Record, field: str) -> str:
    """Return the string value of `field`, or '' when the field is absent or null."""
    if record.data.get(field) is None:
        return ""
    return require_str(record, field)
