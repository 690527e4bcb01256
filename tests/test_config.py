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
    with pytest.raises(cfg.ConfigError, match="EPOCHS.*expected int"):
        cfg.parse(["--epochs=many"])


def test_unknown_name_lists_valid_names(cfg):
    with pytest.raises(cfg.ConfigError) as e:
        cfg.parse(["--modle=cnn"])
    assert "unknown option --modle" in str(e.value) and "MODEL" in str(e.value) and "BATCH_SIZE" in str(e.value)


def test_missing_value_is_refused(cfg):
    with pytest.raises(cfg.ConfigError, match="--NAME=value"):
        cfg.parse(["--epochs"])


def test_public_names_exist():
    for name in ["CHARSET", "LENGTH", "IMAGE_WIDTH", "IMAGE_HEIGHT", "MODEL", "EPOCHS", "BATCH_SIZE", "LR", "SEED",
                 "RUN", "DATASET_DIR", "TRAIN_DIR", "TEST_DIR", "WEIGHTS_DIR", "TARGET_ACCURACY"]:
        assert name in config.names()
    assert config.IMAGE_WIDTH == 160 and config.IMAGE_HEIGHT == 60 and config.LENGTH == 4 and len(config.CHARSET) == 36
