"""`factory import` refuses what is not a readable GGUF file with one clear message (exit 2).
The real import is tested on SmolLM2 in test_real_model.py."""

from __future__ import annotations

import pytest

from factory.cli.main import main


@pytest.mark.parametrize("name, content, words", [
    ("model.bin", b"x", "not a .gguf file"),
    ("model.gguf", b"GGUF\x03\x00\x00\x00garbage", "not a readable GGUF file"),
    ("empty.gguf", b"", "not a readable GGUF file"),
])
def test_bad_files_are_refused(tmp_path, home, capsys, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    assert main(["import", str(path), "--as", "me/model"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and words in err and "Traceback" not in err
    assert not (home / "hub" / "models").exists()  # nothing half-written


def test_missing_file_bad_id_and_missing_arguments(tmp_path, home, capsys):
    assert main(["import", str(tmp_path / "none.gguf"), "--as", "me/model"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    assert main(["import", str(tmp_path / "a.gguf"), "--as", "../evil"]) == 2
    assert "--as" in capsys.readouterr().err
    assert main(["import", str(tmp_path / "a.gguf")]) == 2
    assert "factory import FILE.gguf --as ORG/NAME" in capsys.readouterr().err


def test_a_gguf_base_model_is_a_local_path_for_the_grant_check(tmp_path):
    from factory.request.config import parse_request
    from factory.admission.grants import local_paths

    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    req = parse_request({"base_model": str(path), "datasets": [{"path": "o/d"}]})
    assert ("base_model", str(path)) in local_paths(req)
