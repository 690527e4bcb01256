import importlib

import pytest

import config


@pytest.fixture
def cfg():
    yield config
    importlib.reload(config)  # undo overrides


def test_overrides_are_case_insensitive_and_typed(cfg):
    pos, opts = cfg.parse(["--model=resnet18", "--EPOCHS=3", "--lr=1e-2", "--Run=123", "img.png"], split="train")
    assert (cfg.MODEL, cfg.EPOCHS, cfg.LR, cfg.RUN) == ("resnet18", 3, 0.01, "123")
    assert pos == ["img.png"] and opts == {"split": "train"}


def test_int_default_accepts_int_for_float_and_tuple_length(cfg):
    cfg.parse(["--lr=1", "--length=(4, 6)", "--skip_bad=1"])
    assert cfg.LR == 1.0 and isinstance(cfg.LR, float)
    assert cfg.LENGTH == (4, 6) and cfg.SKIP_BAD is True


def test_script_options(cfg):
    _, opts = cfg.parse(["--split=test", "--count=50"], split="train", count=10)
    assert opts == {"split": "test", "count": 50}


def test_wrong_type_is_refused(cfg):
    with pytest.raises(cfg.ConfigError, match="epochs.*expected int"):
        cfg.parse(["--epochs=many"])


def test_unknown_name_lists_valid_names(cfg):
    with pytest.raises(cfg.ConfigError) as e:
        cfg.parse(["--modle=cnn"])
    assert "unknown option --modle (did you mean --model?)" in str(e.value) and "--help" in str(e.value)
    with pytest.raises(cfg.ConfigError, match=r"did you mean --epochs\?"):
        cfg.parse(["--epoch=5"])


def test_missing_value_is_refused(cfg):
    with pytest.raises(cfg.ConfigError, match="--NAME=value"):
        cfg.parse(["--epochs"])


def test_public_names_exist():
    for name in ["CHARSET", "LENGTH", "IMAGE_WIDTH", "IMAGE_HEIGHT", "MODEL", "EPOCHS", "BATCH_SIZE", "LR", "SEED",
                 "RUN", "DATASET_DIR", "TRAIN_DIR", "TEST_DIR", "WEIGHTS_DIR", "TARGET_ACCURACY"]:
        assert name in config.names()
    # training reads its folder; generation has the ImageCaptcha defaults
    assert (config.CHARSET, config.LENGTH, config.IMAGE_WIDTH, config.IMAGE_HEIGHT, config.CHANNELS) == ("infer", 0, 0, 0, 0)
    assert (config.GEN_WIDTH, config.GEN_HEIGHT, config.GEN_LENGTH, len(config.GEN_CHARSET)) == (160, 60, 4, 36)


@pytest.mark.slow
def test_help_prints_settings_with_comments():
    from conftest import run_script
    out = run_script("train.py", "--help")
    assert out.returncode == 0 and "EPOCHS = 0" in out.stdout and "# passes over the training images" in out.stdout
    assert "--resume=False" in out.stdout and "Traceback" not in out.stdout


def test_test_dir_defaults_to_the_sibling_test_folder(cfg, tmp_path):
    (tmp_path / "a" / "train").mkdir(parents=True)
    cfg.parse([f"--train_dir={tmp_path}/a/train"])
    assert cfg.test_dir() == ""  # no a/test
    (tmp_path / "a" / "test").mkdir()
    assert cfg.test_dir() == str(tmp_path / "a" / "test")
    cfg.parse([f"--train_dir={tmp_path}/a"])
    assert cfg.test_dir() == ""  # only a folder named "train" has a sibling test folder
    cfg.parse([f"--test_dir={tmp_path}/b"])
    assert cfg.test_dir() == f"{tmp_path}/b"


def test_an_argument_a_command_does_not_take_is_refused_naming_the_option(cfg, tmp_path):
    """A positional argument a command does not read is refused, never dropped: a folder names the option that
    takes it, NAME=value without dashes names its spelling; commands that take some still take them."""
    with pytest.raises(cfg.ConfigError, match=f"a folder is named with --train_dir={tmp_path}"):
        cfg.parse([str(tmp_path)], arguments=0, folder_option="train_dir")
    with pytest.raises(cfg.ConfigError, match="takes no arguments.*: write --epochs=3"):
        cfg.parse(["epochs=3"], arguments=0)
    with pytest.raises(cfg.ConfigError, match="'b.pt'.* at most 1 argument besides"):
        cfg.parse(["a.pt", "b.pt"], arguments=1)
    assert cfg.parse(["a.pt", "--epochs=2"], arguments=1)[0] == ["a.pt"]
    assert cfg.parse(["a.png", "b.png"])[0] == ["a.png", "b.png"]  # arguments=None: any number


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", "/tmp/x", ".hidden", "a\\b", "tab\there"])
def test_a_run_name_that_is_a_path_is_refused(cfg, name):
    """RUN names the checkpoints' files in WEIGHTS_DIR: a path would write them elsewhere."""
    with pytest.raises(cfg.ConfigError, match="RUN="):
        cfg.parse([f"--run={name}"])


@pytest.mark.parametrize("value, ok", [("auto", True), ("cpu", True), ("cuda", True), ("cuda:1", True),
                                       ("mps", True), ("tpu", False), ("cuda:x", False), ("gpu", False)])
def test_device_values(cfg, value, ok):
    if ok:
        cfg.parse([f"--device={value}"])
    else:
        with pytest.raises(cfg.ConfigError, match="DEVICE="):
            cfg.parse([f"--device={value}"])


def test_a_device_this_machine_lacks_is_refused_in_one_line():
    import torch
    from core.device import pick_device
    if torch.cuda.is_available():
        with pytest.raises(config.ConfigError, match=r"cuda:0 to cuda:"):
            pick_device(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(config.ConfigError, match="no CUDA GPU"):
            pick_device("cuda")
    assert pick_device("cpu").type == "cpu"


def test_output_into_a_closed_pipe_ends_quietly():
    """`predict.py F | head -n 3`: once the reader has gone the command stops without a traceback (exit 1)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from core import cli\n"
            "def main():\n    for i in range(200000):\n        print('x' * 80)\n"
            "cli.run(main)")
    p = subprocess.Popen([sys.executable, "-c", code, root], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"x" * 80 + b"\n"
    p.stdout.close()  # the reader goes, as head does after its lines
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 1 and "Traceback" not in err and "BrokenPipeError" not in err, err
