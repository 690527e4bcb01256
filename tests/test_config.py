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
