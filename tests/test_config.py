"""The request schema at the door: every bad input is one clear message and exit code 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from factory.cli.main import main
from factory.request.config import Request, load_request, parse_request
from factory.base.errors import UserError

GOOD = """\
base_model: org/base
datasets:
  - path: org/data
    type: alpaca
adapter: lora
lora_target_linear: true
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "req.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path, text) -> str:
    with pytest.raises(UserError) as exc:
        load_request(write(tmp_path, text))
    return str(exc.value)


def test_good_request_loads_typed(tmp_path):
    r = load_request(write(tmp_path, GOOD))
    assert isinstance(r, Request)
    assert r.datasets[0].path == "org/data" and r.sample_packing is True and r.excess_length_strategy == "drop"


def test_unknown_key_suggests_and_names_line(tmp_path):
    msg = error_of(tmp_path, GOOD + "learning_rat: 0.001\n")
    assert "unknown key `learning_rat`" in msg and "did you mean `learning_rate`" in msg
    assert "req.yaml:7" in msg


def test_unknown_nested_key_has_path_and_line(tmp_path):
    text = GOOD.replace("    type: alpaca\n", "    type: alpaca\n    feild_output: answer\n")
    msg = error_of(tmp_path, text)
    assert "datasets[0].feild_output" in msg and "did you mean `field_output`" in msg and "req.yaml:5" in msg


def test_axolotl_capability_not_supported_is_named(tmp_path):
    msg = error_of(tmp_path, GOOD + "rl: gdpo\n")
    assert "this config needs what the factory does not do" in msg and "online RL with generation" in msg
    assert msg.rstrip().endswith("(rl: gdpo)")
    msg = error_of(tmp_path, GOOD + "rl: dpo\n")  # a method the factory trains, on data that is not pairs
    assert "rl: dpo trains on chosen/rejected pairs (type: preference" in msg and "not type: alpaca" in msg


def test_wrong_type(tmp_path):
    msg = error_of(tmp_path, GOOD + "micro_batch_size: lots\n")
    assert "micro_batch_size" in msg and "'lots'" in msg


def test_every_problem_is_listed(tmp_path):
    msg = error_of(tmp_path, GOOD + "sequence_len: -3\nwandb_projcet: x\n")
    assert "sequence_len" in msg and "wandb_projcet" in msg and "did you mean `wandb_project`" in msg


@pytest.mark.parametrize("bad", ["../x", "/etc", "org/../etc", "a/b/c", "org/na me"])
def test_bad_repo_ids_rejected(bad):
    with pytest.raises(UserError):
        parse_request({"base_model": "org/base", "datasets": [{"path": "org/data"}], "hub_model_id": bad})


@pytest.mark.parametrize("bad", ["../x", "/etc"])
def test_bad_base_model_rejected(bad):
    with pytest.raises(UserError) as exc:
        parse_request({"base_model": bad, "datasets": [{"path": "org/data"}]})
    assert "base_model" in str(exc.value)


def test_dataset_path_with_dotdot_rejected():
    with pytest.raises(UserError) as exc:
        parse_request({"base_model": "org/base", "datasets": [{"path": "../secret/data.jsonl"}]})
    assert "'..'" in str(exc.value)


def test_local_dataset_resolves_against_request_folder(tmp_path):
    (tmp_path / "d.jsonl").write_text("{}\n")
    r = load_request(write(tmp_path, GOOD.replace("org/data", "d.jsonl")))
    assert Path(r.datasets[0].path) == tmp_path / "d.jsonl"


def test_qlora_needs_4bit():
    with pytest.raises(UserError) as exc:
        parse_request({"base_model": "o/b", "datasets": [{"path": "o/d"}], "adapter": "qlora", "lora_target_linear": True})
    assert "load_in_4bit" in str(exc.value)


def test_not_yaml(tmp_path):
    msg = error_of(tmp_path, "base_model: [unclosed\n")
    assert "not valid YAML" in msg and "req.yaml:" in msg


def test_validate_cli_exit_codes(tmp_path, home, capsys):
    assert main(["validate", str(write(tmp_path, GOOD + "lerning_rate: 1\n"))]) == 2
    assert "did you mean `learning_rate`" in capsys.readouterr().err
    # a valid schema with an unknown base model: exit 2 and a message naming it
    assert main(["validate", str(write(tmp_path, GOOD))]) == 2
    assert "org/base" in capsys.readouterr().err
    # --offline: the same request is checked without its base model, which is said
    assert main(["validate", "--offline", str(write(tmp_path, GOOD))]) == 0
    out = capsys.readouterr().out
    assert "base-unavailable" in out and "org/base" in out and "valid" in out


def test_missing_dataset_file_fails_in_run(tmp_path, home, capsys):
    req = write(tmp_path, GOOD.replace("org/data", "missing.jsonl"))
    from factory.data.data import dataset_files

    with pytest.raises(UserError) as exc:
        dataset_files(load_request(req).datasets[0], hub=None)
    assert "does not exist" in str(exc.value)


def test_validate_imports_no_torch(tmp_path, home):
    req = write(tmp_path, GOOD)
    code = (
        "import sys, time; t=time.time(); from factory.cli.main import main; rc = main(['validate', sys.argv[1]]); "
        "assert 'torch' not in sys.modules, 'torch imported'; print(rc, time.time()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(req)], capture_output=True, text=True, env={"FACTORY_HOME": str(home), "PATH": ""})
    assert out.returncode == 0, out.stderr
    rc, _seconds = out.stdout.split()
    assert rc == "2"  # org/base is not in the empty local hub


def test_keys_listing(capsys):
    assert main(["validate", "--keys"]) == 0
    out = capsys.readouterr().out
    assert "datasets[].field_instruction" in out and "sequence_len" in out and "evals.limit" in out


def test_examples_are_valid_requests():
    examples = Path(__file__).resolve().parents[1] / "examples"
    names = sorted(p.name for p in examples.glob("*.yaml"))
    assert len(names) >= 3
    for p in examples.glob("*.yaml"):
        assert isinstance(load_request(p), Request), p
