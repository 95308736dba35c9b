"""Malformed input: every error names the file and line, and `vrm data check` reports it."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from vrm.data.check import check_main
from vrm.data.local import load_local
from vrm.data.readers import read_json, read_json_records, read_jsonl, read_parquet_records
from vrm.data.schema import DataFormatError
from vrm.data.sources import load_source

GOOD_ROW = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}


def jsonl_text(*rows: dict) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def raises_format_error(call, *args, **kwargs) -> DataFormatError:
    with pytest.raises(DataFormatError) as raised:
        call(*args, **kwargs)
    return raised.value


def test_invalid_utf8_in_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    data = jsonl_text(GOOD_ROW, GOOD_ROW).encode() + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n'
    path.write_bytes(data)
    error = raises_format_error(load_local, path)
    assert error.path == str(path)
    assert error.line == 3
    assert "invalid UTF-8" in str(error)
    assert "0xe9" in str(error)
    assert str(error).startswith(f"{path}:3: ")
    assert "Convert the file to UTF-8" in str(error)


def test_invalid_utf8_in_json_document_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'[\n  {"prompt": "a",\n   "chosen": "b",\n   "rejected": "\xff"}\n]\n')
    error = raises_format_error(read_json_records, path)
    assert error.line == 4


def test_invalid_json_in_jsonl_names_record_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(jsonl_text(GOOD_ROW) + '{"prompt": "x", "chosen": \n' + jsonl_text(GOOD_ROW), encoding="utf-8")
    error = raises_format_error(read_jsonl, path)
    assert error.line == 2
    assert "invalid JSON" in str(error)
    assert "one complete JSON object" in str(error)


def test_invalid_json_document_names_decoder_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n  {"prompt": "a", "chosen": "b", "rejected": "c"},\n  {"prompt": "a" "chosen": "b"}\n]\n')
    error = raises_format_error(read_json_records, path)
    assert error.line == 3
    assert "Expecting ',' delimiter" in str(error)

    error = raises_format_error(read_json, path)
    assert error.line == 3


def test_missing_comma_between_records_names_line(tmp_path):
    path = tmp_path / "records.json"
    path.write_text('[\n  {"prompt": "a"}\n  {"prompt": "b"}\n]\n')
    error = raises_format_error(read_json_records, path)
    assert error.line == 3


def test_missing_field_names_record_line(tmp_path):
    path = tmp_path / "missing.jsonl"
    path.write_text(jsonl_text(GOOD_ROW, {"prompt": "p", "chosen": "c"}), encoding="utf-8")
    error = raises_format_error(load_local, path)
    assert error.line == 2
    assert "missing field 'rejected'" in str(error)
    assert "Add the field" in str(error)


def test_wrong_type_names_record_index_and_line(tmp_path):
    rows = [GOOD_ROW, GOOD_ROW, {**GOOD_ROW, "rejected": 5}]
    path = tmp_path / "typed.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    error = raises_format_error(load_local, path)
    # json.dumps with indent=2 puts each record on 5 lines after the opening bracket.
    assert error.line == 12
    assert "record 2" in str(error)
    assert "field 'rejected' is a number, expected a string" in str(error)


def test_boolean_is_not_a_number(tmp_path):
    row = {"scenario": "s", "label": True, "prompt": "p", "response 1": "a", "response 2": "b"}
    path = tmp_path / "autoj.jsonl"
    path.write_text(jsonl_text(row), encoding="utf-8")
    error = raises_format_error(load_source, "autoj", files=[path])
    assert error.line == 1
    assert "field 'label' is True" in str(error)


def test_parquet_wrong_type_names_row(tmp_path):
    import pandas as pd

    path = tmp_path / "pairs.parquet"
    pd.DataFrame({"prompt": ["a", "b"], "chosen": ["c", "d"], "rejected": [1, 2]}).to_parquet(path)
    error = raises_format_error(load_local, path)
    assert error.line is None
    assert "row 0 (counting from 0)" in str(error)


@pytest.mark.parametrize("content", [b"", b"  \n\n  \n"])
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_empty_file(tmp_path, content, suffix):
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(content)
    error = raises_format_error(load_local, path, "jsonl" if suffix == ".jsonl" else "json")
    assert "empty file" in str(error)
    assert str(path) in str(error)


def test_empty_parquet_file(tmp_path):
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    error = raises_format_error(read_parquet_records, path)
    assert "empty file" in str(error)


def test_invalid_parquet_file(tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text("not parquet at all")
    error = raises_format_error(read_parquet_records, path)
    assert "invalid Parquet file" in str(error)


def test_empty_json_list(tmp_path):
    path = tmp_path / "none.json"
    path.write_text("[]\n")
    error = raises_format_error(read_json_records, path)
    assert "contains no records" in str(error)


def test_json_object_where_list_expected(tmp_path):
    path = tmp_path / "object.json"
    path.write_text('{"prompt": "a"}')
    error = raises_format_error(read_json_records, path)
    assert "expected a JSON list of records, found an object" in str(error)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text(jsonl_text(GOOD_ROW) + "[1, 2]\n")
    error = raises_format_error(read_jsonl, path)
    assert error.line == 2
    assert "expected a JSON object, found a list" in str(error)


def test_gzip_jsonl_errors(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(gzip.compress(jsonl_text(GOOD_ROW).encode() + b"{oops\n"))
    error = raises_format_error(read_jsonl, path)
    assert error.line == 2

    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"this is not gzip data")
    error = raises_format_error(read_jsonl, broken)
    assert "invalid gzip data" in str(error)


def test_line_separator_inside_string_keeps_line_numbers(tmp_path):
    # U+2028 is valid inside a JSON string and must not count as a line break.
    path = tmp_path / "separator.jsonl"
    path.write_text(jsonl_text({**GOOD_ROW, "prompt": "a\u2028b"}) + '{"bad"\n', encoding="utf-8")
    error = raises_format_error(read_jsonl, path)
    assert error.line == 2


def test_adapter_error_names_source_file_line(tmp_path):
    rows = [
        {"idx": 0, "instruction": "i", "input": "", "response1": "a", "response2": "b",
         "annotator1": 1, "annotator2": 1, "annotator3": 1},
        {"idx": 1, "instruction": "i", "input": "", "response1": "a", "response2": "b",
         "annotator1": 1, "annotator2": 5, "annotator3": 1},
    ]
    path = tmp_path / "testset-v1.json"
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    error = raises_format_error(load_source, "pandalm", files=[path])
    assert error.path == str(path)
    assert error.line == 12
    assert "field 'annotator2' is 5, expected one of 0, 1, 2" in str(error)


def test_chat_form_must_end_with_assistant(tmp_path):
    row = {
        "chosen": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}],
        "rejected": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "c"}],
    }
    path = tmp_path / "chat.jsonl"
    path.write_text(jsonl_text(GOOD_ROW, row), encoding="utf-8")
    error = raises_format_error(load_local, path)
    assert error.line == 2
    assert "expected 'assistant'" in str(error)


def test_duplicate_id_in_local_file(tmp_path):
    path = tmp_path / "ids.jsonl"
    path.write_text(jsonl_text({**GOOD_ROW, "id": "x"}, {**GOOD_ROW, "id": "x"}), encoding="utf-8")
    error = raises_format_error(load_local, path)
    assert error.line == 2
    assert "duplicate id 'x'" in str(error)


# --- vrm data check ----------------------------------------------------------------------


def run_check(path: Path | str, fmt: str | None) -> tuple[int, str, str]:
    stdout = io.StringIO()
    stderr = io.StringIO()
    status = check_main(str(path), fmt, stdout=stdout, stderr=stderr)
    return status, stdout.getvalue(), stderr.getvalue()


def test_check_broken_second_line(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl_text(GOOD_ROW) + '{"prompt": "x",,}\n' + jsonl_text(GOOD_ROW), encoding="utf-8")
    status, stdout, stderr = run_check(path, None)
    assert status == 1
    assert f"{path}:2:" in stderr
    assert "invalid JSON" in stderr
    assert "Traceback" not in stderr
    assert stdout == ""


def test_check_writes_to_stderr(tmp_path, capfd):
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl_text(GOOD_ROW) + "not json\n", encoding="utf-8")
    status = check_main(str(path), "jsonl")
    captured = capfd.readouterr()
    assert status == 1
    assert f"{path}:2:" in captured.err


def test_check_prints_counts(tmp_path):
    rows = [GOOD_ROW, {**GOOD_ROW, "rejected": ""}, {**GOOD_ROW, "rejected": "Blue."}]
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl_text(*rows), encoding="utf-8")
    status, stdout, stderr = run_check(path, None)
    assert status == 0
    assert stderr == ""
    assert "rows read: 3" in stdout
    assert "pairs kept: 1" in stdout
    assert "  empty side: 1" in stdout
    assert "  identical sides: 1" in stdout


def test_check_source_from_data_root(data_root):
    status, stdout, _ = run_check(data_root, "autoj")
    assert status == 0
    assert "rows read: 1392" in stdout
    assert "pairs kept: 1017" in stdout
    assert "  tie: 373" in stdout


def test_check_source_from_its_file(data_root):
    path = data_root / "llmeval2/WideDeep/evaluation_data/LLMEval2_benchmark.json"
    status, stdout, _ = run_check(path, "llmeval2")
    assert status == 0
    assert "pairs kept: 2042" in stdout
    assert "  truncated dialogue: 21" in stdout


def test_check_source_missing_from_folder(tmp_path):
    status, stdout, stderr = run_check(tmp_path, "pandalm")
    assert status == 1
    assert "dataset 'pandalm' not found" in stderr
    assert stdout == ""


def test_check_unknown_format(tmp_path):
    status, _, stderr = run_check(tmp_path / "x.csv", "csv")
    assert status == 2
    assert "unknown format 'csv'" in stderr


def test_check_missing_file(tmp_path):
    status, _, stderr = run_check(tmp_path / "nothing.jsonl", None)
    assert status == 1
    assert "file not found" in stderr


def test_check_unknown_extension(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("x")
    status, _, stderr = run_check(path, None)
    assert status == 1
    assert "cannot tell the format" in stderr
