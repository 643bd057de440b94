"""Manifests are checked line by line: a wrong type, a byte that is not UTF-8 or an absurd id is
one line naming the file and the line, from the library and from the commands."""
import json

import pytest

from vavl.core.errors import DataError
from vavl.data import read_manifest

GOOD = {"id": "a", "audio": "a.wav", "label": "angry", "folds": {"vavl-1": "train"}}

BAD = {
    "id null": ({"id": None}, '"id" must be a non-empty string, got null'),
    "id int": ({"id": 7}, '"id" must be a non-empty string, got int 7'),
    "id list": ({"id": ["a"]}, '"id" must be a non-empty string, got list ["a"]'),
    "id dict": ({"id": {"x": 1}}, '"id" must be a non-empty string, got dict {"x": 1}'),
    "id empty": ({"id": " "}, '"id" must be a non-empty string'),
    "id newline": ({"id": "a\nb"}, "holds control characters"),
    "id too long": ({"id": "x" * 1001}, '"id" is 1001 characters long; use at most 1000'),
    "audio int": ({"id": "b", "audio": 5}, '"audio" must be a file path (a string) or null, got int 5'),
    "audio list": ({"id": "b", "audio": ["a.wav"]}, '"audio" must be a file path (a string) or null, got list'),
    "audio bool": ({"id": "b", "audio": True}, '"audio" must be a file path (a string) or null, got bool true'),
    "video dict": ({"id": "b", "video": {}}, '"video" must be a file path (a string) or null, got dict'),
    "folds list": ({"id": "b", "folds": ["train"]}, '"folds" must be an object'),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_field_is_one_line_naming_file_and_line(tmp_path, name):
    record, says = BAD[name]
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_manifest(path)
    assert str(e.value).startswith(f"{path}:2: ") and says in str(e.value) and "\n" not in str(e.value)


def test_bytes_that_are_not_utf8_are_one_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"m.jsonl:2: not UTF-8 text \(byte 0xe9 at column 12\); save the manifest as UTF-8"):
        read_manifest(path)


def test_a_long_id_a_byte_order_mark_and_null_folds_are_fine(tmp_path):
    path = tmp_path / "m.jsonl"
    long_id = "speaker/" + "x" * 400
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n"
                     + json.dumps({"id": long_id, "audio": None, "folds": None}).encode() + b"\n")
    records = read_manifest(path)
    assert [r["id"] for r in records] == ["a", long_id] and records[1]["folds"] == {}


@pytest.mark.parametrize("command", ["extract", "evaluate"])
def test_the_commands_say_it_in_one_line(tmp_path, capsys, command):
    from vavl.cli import main

    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": 12, "audio": "a.wav"}) + "\n")
    args = {"extract": ["extract", "--manifest", str(path), "--out", str(tmp_path / "c"), "--audio-encoder", "mfcc"],
            "evaluate": ["evaluate", "--manifest", str(path), "--cache", str(tmp_path / "c"), "--model", str(tmp_path), "--out", str(tmp_path / "r"),
                         "--split", "all"]}
    assert main(args[command]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:1: \"id\" must be a non-empty string, got int 12" in err[0], err
