"""Settings: environment over ``playhouse.toml`` over defaults, errors that name the field,
every setting documented, and secrets that never leave ``mask``/``effective`` readable."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from playhouse.config import (
    SchedulerSettings,
    Settings,
    StorageSettings,
    WebSettings,
    WorkerSettings,
    effective,
    field_docs,
    mask,
)
from playhouse.errors import ConfigError

ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw=="
CONN = (
    "DefaultEndpointsProtocol=https;AccountName=acct;"
    f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
)
SAS_SIGNATURE = "Zm9yZ2VkLXNpZ25hdHVyZQ%3D%3D"
SAS_CONN = (
    "BlobEndpoint=https://acct.blob.core.windows.net/;"
    "QueueEndpoint=https://acct.queue.core.windows.net/;"
    f"SharedAccessSignature=sv=2022-11-02&ss=bqt&srt=sco&sp=rwdlacup&sig={SAS_SIGNATURE}"
)
REDIS_PASSWORD = "hunter2-redis-password"
REDIS_URL = f"redis://default:{REDIS_PASSWORD}@cache.example.com:6380/0"
SECRET_KEY = "k3y-for-session-cookies-0123456789abcdef"

SECTIONS: dict[str, type[msgspec.Struct]] = {
    "storage": StorageSettings,
    "web": WebSettings,
    "worker": WorkerSettings,
    "scheduler": SchedulerSettings,
}


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "playhouse.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- sources and precedence -------------------------------------------------------------


def test_defaults_without_file_or_environment(tmp_path: Path) -> None:
    settings = Settings.load({}, tmp_path / "absent.toml")
    assert settings == Settings()
    assert settings.web.port == 8000
    assert settings.storage.connection_string is None


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        'log_level = "debug"\n[web]\nport = 9001\n[worker]\nbatch_size = 8\n'
        "[scheduler]\nenabled = false\n",
    )
    settings = Settings.load({}, path)
    assert settings.log_level == "debug"
    assert settings.web.port == 9001
    assert settings.worker.batch_size == 8
    assert settings.scheduler.enabled is False
    assert settings.web.host == WebSettings().host  # untouched fields keep their default


def test_environment_overrides_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[web]\nport = 9001\nhost = "0.0.0.0"\n')
    settings = Settings.load({"PLAYHOUSE_WEB_PORT": "8080"}, path)
    assert settings.web.port == 8080
    assert settings.web.host == "0.0.0.0"


def test_environment_strings_are_converted_to_each_field_type() -> None:
    settings = Settings.load(
        {
            "PLAYHOUSE_WORKER_POLL_MAX_S": "0.5",
            "PLAYHOUSE_SCHEDULER_ENABLED": "false",
            "PLAYHOUSE_WEB_SECURE_COOKIES": "true",
            "PLAYHOUSE_WORKER_MAX_MODELS": "2",
        },
        None,
    )
    assert settings.worker.poll_max_s == 0.5
    assert settings.scheduler.enabled is False
    assert settings.web.secure_cookies is True
    assert settings.worker.max_models == 2


def test_short_aliases_from_design(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[storage]\nconnection_string = "from-file"\n')
    settings = Settings.load({"PLAYHOUSE_STORAGE": CONN, "PLAYHOUSE_REDIS_URL": REDIS_URL}, path)
    assert settings.storage.connection_string == CONN
    assert settings.web.redis_url == REDIS_URL


def test_top_level_fields_from_environment() -> None:
    settings = Settings.load(
        {"PLAYHOUSE_PERSONAS_DIR": "/srv/personas", "PLAYHOUSE_LOG_FORMAT": "json"}, None
    )
    assert settings.personas_dir == "/srv/personas"
    assert settings.log_format == "json"


def test_unrelated_environment_is_ignored() -> None:
    settings = Settings.load(
        {"HOME": "/root", "PLAYHOUSE_NOT_A_SETTING": "x", "WEB_PORT": "1"}, None
    )
    assert settings == Settings()


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "field"),
    [
        ({"PLAYHOUSE_WEB_PORT": "eighty"}, "web.port"),
        ({"PLAYHOUSE_WORKER_BATCH_SIZE": "1.5"}, "worker.batch_size"),
        ({"PLAYHOUSE_SCHEDULER_ENABLED": "maybe"}, "scheduler.enabled"),
        ({"PLAYHOUSE_STORAGE_TIMEOUT_S": "soon"}, "storage.timeout_s"),
    ],
)
def test_wrong_type_in_environment_names_the_field(environ: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(environ, None)
    assert field in str(info.value)


def test_wrong_type_in_toml_names_the_field(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[worker]\nmax_deliveries = "three"\n')
    with pytest.raises(ConfigError) as info:
        Settings.load({}, path)
    assert "worker.max_deliveries" in str(info.value)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[web]\nprot = 8080\n", ("prot", "web")),
        ("colour = 'red'\n", ("colour",)),
        ("[gpu]\ncount = 1\n", ("gpu",)),
    ],
)
def test_unknown_toml_key_names_the_key(tmp_path: Path, text: str, names: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({}, write_toml(tmp_path, text))
    message = str(info.value)
    assert "unknown field" in message
    for name in names:
        assert name in message


def test_section_given_as_a_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load({}, write_toml(tmp_path, "web = 3\n"))
    assert "web" in str(info.value)


@pytest.mark.parametrize(
    ("text", "environ"),
    [
        ("web = 3\n", {"PLAYHOUSE_WEB_PORT": "8080"}),
        ('storage = "x"\n', {"PLAYHOUSE_STORAGE": "UseDevelopmentStorage=true"}),
    ],
)
def test_section_given_as_a_value_and_set_from_environment_is_an_error(
    tmp_path: Path, text: str, environ: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(environ, write_toml(tmp_path, text))
    assert text.split(" ")[0] in str(info.value)


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[web\nport = 1\n")
    with pytest.raises(ConfigError) as info:
        Settings.load({}, path)
    assert str(path) in str(info.value)
    assert "line 1" in str(info.value)


# --- documentation -------------------------------------------------------------------------


@pytest.mark.parametrize("section", [*SECTIONS, "(top level)"])
def test_every_setting_is_documented(section: str) -> None:
    struct = SECTIONS.get(section, Settings)
    docs = field_docs(struct)
    fields = [f for f in struct.__struct_fields__ if struct is not Settings or f not in SECTIONS]
    assert fields
    undocumented = [f for f in fields if not docs.get(f, "").strip()]
    assert undocumented == []


def test_effective_lists_every_setting_with_its_description() -> None:
    rows = effective(Settings())
    names = [name for name, _, _ in rows]
    expected = [
        f"{section}.{field}"
        for section, struct in SECTIONS.items()
        for field in struct.__struct_fields__
    ] + [f for f in Settings.__struct_fields__ if f not in SECTIONS]
    assert names == expected
    assert all(doc.strip() for _, _, doc in rows)


# --- masking -------------------------------------------------------------------------------


def test_mask_hides_the_account_key_and_keeps_the_rest() -> None:
    masked = mask(CONN)
    assert ACCOUNT_KEY not in masked
    assert "AccountKey=***" in masked
    assert "AccountName=acct" in masked
    assert "EndpointSuffix=core.windows.net" in masked


def test_mask_hides_a_shared_access_signature() -> None:
    masked = mask(SAS_CONN)
    assert SAS_SIGNATURE not in masked
    assert "sig=" not in masked
    assert "BlobEndpoint=https://acct.blob.core.windows.net/" in masked


def test_mask_hides_a_sas_signature_in_a_url() -> None:
    url = f"https://acct.blob.core.windows.net/images?sv=2022-11-02&sp=r&sig={SAS_SIGNATURE}"
    masked = mask(url)
    assert SAS_SIGNATURE not in masked
    assert masked.startswith("https://acct.blob.core.windows.net/images?")


@pytest.mark.parametrize(
    "url",
    [REDIS_URL, f"rediss://:{REDIS_PASSWORD}@cache.example.com:6380"],
)
def test_mask_hides_a_url_password(url: str) -> None:
    masked = mask(url)
    assert REDIS_PASSWORD not in masked
    assert "cache.example.com:6380" in masked


def test_mask_keeps_a_url_without_credentials() -> None:
    assert mask("redis://cache.example.com:6379/0") == "redis://cache.example.com:6379/0"


def test_mask_keeps_the_development_storage_shortcut() -> None:
    assert mask("UseDevelopmentStorage=true") == "UseDevelopmentStorage=true"


@pytest.mark.parametrize(
    "secret",
    [SECRET_KEY, "short", "base64-secret-with-padding==", "has;semicolons=and-equals-signs"],
)
def test_mask_hides_a_plain_secret(secret: str) -> None:
    masked = mask(secret)
    assert secret not in masked
    assert "***" in masked


def test_mask_says_unset_for_none() -> None:
    assert mask(None) == "(unset)"


def test_effective_never_shows_a_secret_value() -> None:
    settings = Settings.load(
        {
            "PLAYHOUSE_STORAGE": CONN,
            "PLAYHOUSE_REDIS_URL": REDIS_URL,
            "PLAYHOUSE_WEB_SECRET_KEY": SECRET_KEY,
        },
        None,
    )
    rows = effective(settings)
    shown = "\n".join(f"{name} {value} {doc}" for name, value, doc in rows)
    for secret in (ACCOUNT_KEY, REDIS_PASSWORD, SECRET_KEY):
        assert secret not in shown
    values = dict((name, value) for name, value, _ in rows)
    assert "AccountName=acct" in values["storage.connection_string"]
    assert "cache.example.com" in values["web.redis_url"]


def test_effective_hides_a_sas_connection_string() -> None:
    settings = Settings.load({"PLAYHOUSE_STORAGE": SAS_CONN}, None)
    shown = "\n".join(value for _, value, _ in effective(settings))
    assert SAS_SIGNATURE not in shown


def test_the_worker_engine_is_one_of_three_and_is_checked() -> None:
    assert Settings.load({}, None).worker.engine == "auto"
    for name in ("transformers", "ctranslate2", "auto"):
        assert Settings.load({"PLAYHOUSE_WORKER_ENGINE": name}, None).worker.engine == name
    with pytest.raises(ConfigError, match="engine"):
        Settings.load({"PLAYHOUSE_WORKER_ENGINE": "tensorrt"}, None)
    with pytest.raises(ConfigError, match="quantization"):
        Settings.load({"PLAYHOUSE_WORKER_QUANTIZATION": "int3"}, None)


def test_worker_engine_on_the_command_line() -> None:
    from playhouse.cli import _parser

    args = _parser().parse_args(["worker", "--kind", "text", "--engine", "ctranslate2"])
    assert args.engine == "ctranslate2"
    assert _parser().parse_args(["worker", "--kind", "text"]).engine is None
    with pytest.raises(SystemExit):
        _parser().parse_args(["worker", "--kind", "text", "--engine", "onnx"])
