"""flows.settings: explicit value, then the environment, then the embedded stack."""

import pytest

from flows.errors import ConfigError
from flows.settings import Settings
from flows.stack.config import StackConfig


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in ("FLOWS_DATABASE_URL", "FLOWS_JWT_SECRET", "FLOWS_VENDOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_nothing_configured_is_a_clear_error(clean_env):
    settings = Settings.resolve()
    assert settings.home == clean_env and not settings.has_database
    with pytest.raises(ConfigError, match="no database configured"):
        _ = settings.database_url
    with pytest.raises(ConfigError, match="no JWT secret configured"):
        _ = settings.jwt_secret
    assert settings.vendor == "test"


def test_the_embedded_stack_comes_last(clean_env, monkeypatch):
    stack = StackConfig.create(clean_env)
    settings = Settings.resolve()
    assert settings.has_database
    assert settings.database_url == stack.cluster().socket_url(stack.database)
    assert settings.jwt_secret == stack.jwt_secret

    monkeypatch.setenv("FLOWS_DATABASE_URL", "postgresql://env@db/flows")
    monkeypatch.setenv("FLOWS_JWT_SECRET", "e" * 32)
    from_env = Settings.resolve()
    assert (from_env.database_url, from_env.jwt_secret) == ("postgresql://env@db/flows", "e" * 32)

    explicit = Settings.resolve(database_url="postgresql://cli@db/flows", jwt_secret="c" * 32)
    assert (explicit.database_url, explicit.jwt_secret) == ("postgresql://cli@db/flows", "c" * 32)


def test_an_explicit_home_is_where_the_stack_is_read(clean_env, tmp_path):
    other = tmp_path / "other"
    stack = StackConfig.create(other)
    assert Settings.resolve(home=other).jwt_secret == stack.jwt_secret
    assert not Settings.resolve().has_database
