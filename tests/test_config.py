import pytest

from csms import config


def test_defaults_need_no_environment():
    settings = config.load(environ={})
    assert settings["DATABASE_URL"] is None
    assert settings["RABBITMQ_URL"] is None
    assert settings["PORT"] == 8080
    assert settings["HOST"] == "127.0.0.1"
    assert settings["HEARTBEAT_INTERVAL"] == 300
    assert settings["CALL_TIMEOUT"] == 30.0
    assert settings["MAX_FRAME_BYTES"] == 65536
    assert settings["AUTO_REGISTER"] is False
    assert settings["WEB_PROCESSES"] == 1


def test_environment_overrides_and_casts():
    settings = config.load(
        environ={"CSMS_PORT": "9000", "CSMS_AUTO_REGISTER": "yes", "CSMS_CALL_TIMEOUT": "2.5"}
    )
    assert settings["PORT"] == 9000
    assert settings["AUTO_REGISTER"] is True
    assert settings["CALL_TIMEOUT"] == 2.5
    assert config.load(environ={"CSMS_UNPLANNED_HOLD": "12.5"})["UNPLANNED_HOLD"] == 1250
    assert config.load(environ={"CSMS_WEB_PROCESSES": "4"})["WEB_PROCESSES"] == 4


def test_explicit_overrides_win_over_environment():
    assert config.load({"PORT": 1234}, environ={"CSMS_PORT": "9000"})["PORT"] == 1234


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CSMS_PORT", "eighty"),
        ("CSMS_AUTO_REGISTER", "maybe"),
        ("CSMS_CHARGER_RATE", "-1"),
        ("CSMS_CHARGER_RATE", "nan"),
        ("CSMS_CHARGER_BURST", "0"),
        ("CSMS_WEB_PROCESSES", "0"),
        ("CSMS_WEB_PROCESSES", "two"),
        ("CSMS_WEB_PROCESSES", "1.5"),
        ("CSMS_UNPLANNED_HOLD", "ten"),
        ("CSMS_UNPLANNED_HOLD", "0"),
        ("CSMS_UNPLANNED_HOLD", "1.005"),
    ],
)
def test_malformed_environment_names_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        config.load(environ={name: value})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_postgres_urls_mean_psycopg3(url, expected):
    assert config.normalize_database_url(url) == expected


def test_empty_values_unset_optional_settings_only():
    settings = config.load(environ={"CSMS_RABBITMQ_URL": "", "CSMS_BOOT_CONFIGURATION": "", "CSMS_PORT": ""})
    assert settings["RABBITMQ_URL"] is None
    assert settings["BOOT_CONFIGURATION"] == ""
    assert settings["PORT"] == 8080
