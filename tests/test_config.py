"""The config file is the user's contract: every default documented, every mistake named with the key,
the file and what is allowed, before anything starts."""
from pathlib import Path

import pytest

from core.config import SECTIONS
from core.errors import UserError
from streamer import config as streamer_config
from trainer import config as trainer_config

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_matches_both_programs_defaults():
    assert streamer_config.load_config(ROOT / "config.toml") == streamer_config.Config()
    assert trainer_config.load_config(ROOT / "config.toml") == trainer_config.Config()


def test_every_section_belongs_to_exactly_the_programs_sections_say():
    streamer_sections = {f for f in streamer_config.Config.__dataclass_fields__}
    trainer_sections = {f for f in trainer_config.Config.__dataclass_fields__}
    for name, owner in SECTIONS.items():
        expected = {"core": (True, True), "streamer": (True, False), "trainer": (False, True)}[owner]
        assert (name in streamer_sections, name in trainer_sections) == expected, name
    assert streamer_sections | trainer_sections == set(SECTIONS)


def test_cpu_preset_reads_and_shrinks_the_audio_models():
    cpu = trainer_config.load_config(ROOT / "config.cpu.toml").train
    full = trainer_config.TrainConfig()
    assert cpu.resnet_mel.width < full.resnet_mel.width and cpu.resnet_mel.max_epochs < full.resnet_mel.max_epochs
    assert cpu.resnet_mfcc.width < full.resnet_mfcc.width


def test_unknown_key_names_key_file_and_choices(tmp_path):
    path = write(tmp_path, "[server]\nprot = 9000\n")
    with pytest.raises(UserError) as err:
        streamer_config.load_config(path)
    message = str(err.value)
    assert "server.prot" in message and str(path) in message and "port" in message


def test_unknown_section_is_an_error_for_both_programs(tmp_path):
    path = write(tmp_path, "[sever]\nport = 9000\n")
    for program in (streamer_config, trainer_config):
        with pytest.raises(UserError, match=r"unknown section \[sever\]"):
            program.load_config(path)


def test_each_program_skips_the_other_programs_sections_but_checks_its_own(tmp_path):
    path = write(tmp_path, "[server]\nport = 9100\n[train]\nseed = 7\n")
    assert streamer_config.load_config(path).server.port == 9100
    assert trainer_config.load_config(path).train.seed == 7
    bad_train = write(tmp_path, "[train]\nseed = \"x\"\n")
    streamer_config.load_config(bad_train)  # not the daemon's business
    with pytest.raises(UserError, match="train.seed must be int"):
        trainer_config.load_config(bad_train)


def test_wrong_type_names_the_expected_type(tmp_path):
    with pytest.raises(UserError, match=r"server\.port must be int"):
        streamer_config.load_config(write(tmp_path, '[server]\nport = "9000"\n'))


def test_bool_is_not_an_int_and_int_is_a_float(tmp_path):
    with pytest.raises(UserError, match="server.port"):
        streamer_config.load_config(write(tmp_path, "[server]\nport = true\n"))
    assert streamer_config.load_config(write(tmp_path, "[audio]\nqueue_s = 30\n")).audio.queue_s == 30.0


@pytest.mark.parametrize("text,key,allowed", [
    ("[server]\nport = 70000\n", "server.port = 70000", "at most 65535"),
    ("[server]\nclient_queue = 0\n", "server.client_queue = 0", "at least 16"),
    ("[vad]\nthreshold = 1.5\n", "vad.threshold = 1.5", "above 0 and at most 0.99"),
    ("[vad]\nmax_utterance_s = 1.0\n", "vad.max_utterance_s = 1.0", "at least 2"),
    ("[audio]\nblock_ms = 0\n", "audio.block_ms = 0", "at least 4"),
    ("[asr]\ndevice = \"gpu\"\n", "asr.device = 'gpu'", "'auto', 'cpu', 'cuda'"),
    ("[train.resnet_mel]\nwidth = 0\n", "train.resnet_mel.width = 0", "at least 1"),
])
def test_values_outside_their_range_are_refused_with_key_file_and_range(tmp_path, text, key, allowed):
    path = write(tmp_path, text)
    program = trainer_config if text.startswith("[train") else streamer_config
    with pytest.raises(UserError) as err:
        program.load_config(path)
    message = str(err.value)
    assert key in message and str(path) in message and allowed in message


def test_a_sections_own_consistency_check_names_the_section(tmp_path):
    path = write(tmp_path, "[train.augment]\nstretch_min = 1.5\nstretch_max = 1.2\n")
    with pytest.raises(UserError, match=r"\[train.augment\].*stretch_min"):
        trainer_config.load_config(path)


def test_a_file_that_is_not_utf8_is_one_clear_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes("[record]\ndir = \"녹음\"\n".encode("cp949"))
    with pytest.raises(UserError, match="not UTF-8 text.*save the config file as UTF-8"):
        streamer_config.load_config(path)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="not valid TOML"):
        streamer_config.load_config(write(tmp_path, "[server\n"))
    with pytest.raises(UserError, match="does not exist"):
        streamer_config.load_config(tmp_path / "missing.toml")
    with pytest.raises(UserError, match="is a folder"):
        streamer_config.load_config(tmp_path)


def test_flags_override_the_file_and_are_checked_like_it(tmp_path):
    path = write(tmp_path, "[server]\nport = 9000\n")
    config = streamer_config.override(streamer_config.load_config(path),
                                      {"server.port": 9100, "server.host": None, "asr.language": "en"})
    assert (config.server.port, config.server.host, config.asr.language) == (9100, "127.0.0.1", "en")
    with pytest.raises(UserError, match="the command line"):
        streamer_config.override(config, {"server.port": "x"})
    with pytest.raises(UserError, match="server.port = -1.*at least 0"):
        streamer_config.override(config, {"server.port": -1})
