"""The config file is the user's contract: every default documented, every mistake named."""
from pathlib import Path

import pytest

from trainer.config import Config, load_config, override
from trainer.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_matches_the_defaults():
    assert load_config(ROOT / "config.toml") == Config()


def test_unknown_key_names_key_file_and_choices(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nprot = 9000\n')
    with pytest.raises(UserError) as err:
        load_config(path)
    message = str(err.value)
    assert "server.prot" in message and str(path) in message and "port" in message


def test_unknown_section_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[sever]\nport = 9000\n')
    with pytest.raises(UserError, match="sever"):
        load_config(path)


def test_wrong_type_names_the_expected_type(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = "9000"\n')
    with pytest.raises(UserError, match=r"server\.port must be int"):
        load_config(path)


def test_bool_is_not_an_int_and_int_is_a_float(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = true\n')
    with pytest.raises(UserError, match="server.port"):
        load_config(path)
    path.write_text('[vad]\nthreshold = 1\n')
    assert load_config(path).vad.threshold == 1.0


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[server]\nport = 9000\n')
    config = override(load_config(path), {"server.port": 9100, "server.host": None, "asr.language": "en"})
    assert (config.server.port, config.server.host, config.asr.language) == (9100, "127.0.0.1", "en")
    with pytest.raises(UserError, match="the command line"):
        override(config, {"server.port": "x"})
