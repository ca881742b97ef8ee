"""The real ``playhouse`` command line, spawned as a process: persona checks, the masked
settings listing, and daemons that refuse to start with a one-line reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from playhouse.constants import AZURITE_ACCOUNT, AZURITE_KEY
from playhouse.emulator import connection_string_for, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "personas"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
ACCOUNT_KEY = "Y2xpLWFjY291bnQta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw=="
ERROR_LINE = re.compile(r"^(?P<file>[\w.-]+\.toml): (?P<field>\S+): (?P<reason>.+)$")

GOOD = """\
name = "{name}"
display_name = "{name}"
kind = "text"
model = "playhouse/{lower}-gpt2"
rooms = ["Sports", "Technology"]

[activity]
posts_per_day = 6
"""


def good(name: str) -> str:
    return GOOD.format(name=name, lower=name.lower())


def playhouse(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m playhouse --config /dev/null ARGS`` with no PLAYHOUSE_* inherited."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
    clean.update(env or {})
    return subprocess.run(
        [PYTHON, "-m", "playhouse", "--config", "/dev/null", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def closed_port_storage() -> str:
    """A well-formed connection string to a port where nothing listens."""
    port = free_port()
    return connection_string_for("127.0.0.1", port, port, port)


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    """The shipped rooms and ImageBot, one good persona and one file per kind of mistake."""
    folder = tmp_path / "personas"
    folder.mkdir()
    shutil.copy(SHIPPED / "rooms.toml", folder / "rooms.toml")
    shutil.copy(SHIPPED / "imagebot.toml", folder / "imagebot.toml")
    (folder / "a_good.toml").write_text(good("GoodBot"), encoding="utf-8")
    (folder / "wrong_type.toml").write_text(
        good("TypoBot").replace('model = "playhouse/typobot-gpt2"', "model = 3"), encoding="utf-8"
    )
    (folder / "unknown_field.toml").write_text('mood = "sunny"\n' + good("ExtraBot"), "utf-8")
    (folder / "no_model.toml").write_text(
        good("NoModelBot").replace('model = "playhouse/nomodelbot-gpt2"\n', ""), "utf-8"
    )
    (folder / "duplicate.toml").write_text(good("GoodBot"), encoding="utf-8")
    (folder / "unknown_room.toml").write_text(
        good("LostBot").replace('"Technology"', '"Nowhere"'), encoding="utf-8"
    )
    return folder


EXPECTED_ERRORS = {
    ("wrong_type.toml", "model"): "expected a string, got an integer",
    ("unknown_field.toml", "mood"): "unknown field",
    ("no_model.toml", "model"): "missing required field",
    ("duplicate.toml", "name"): "duplicate persona name 'GoodBot'",
    ("unknown_room.toml", "rooms[1]"): "unknown room 'Nowhere'",
}


def error_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if ERROR_LINE.match(line.strip())]


# --- personas check ----------------------------------------------------------------------


def test_personas_check_prints_the_shipped_cast(tmp_path: Path) -> None:
    result = playhouse("personas", "check", str(SHIPPED), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [
        tomllib.loads(path.read_text(encoding="utf-8"))["name"]
        for path in SHIPPED.glob("*.toml")
        if path.name != "rooms.toml"
    ]
    assert len(names) >= 9
    table = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    for name in names:
        assert name in table
    assert f"{len(names)} personas" in result.stdout
    assert "0 errors" in result.stdout
    assert error_lines(result.stdout) == []


def test_personas_import_ssi_writes_files_that_check(tmp_path: Path) -> None:
    ini = tmp_path / "ssi-bot.ini"
    ini.write_text("[DEFAULT]\nnegative_keywords=darn\n\n[Barista_ssi]\n"
                   "text_model_path = models/barista/\nsubreddits = Coffee\n"
                   "new_submission_schedule=Coffee=6\nimage_post_frequency = 0.5\n",
                   encoding="utf-8")
    result = playhouse("personas", "import-ssi", str(ini), "--out", "personas", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "wrote personas/barista_ssi.toml (u/Barista_ssi, grammar ssi-bot)" in result.stdout
    assert "image_post_frequency = 0.5: no image posts here" in result.stdout
    check = playhouse("personas", "check", "personas", cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.splitlines()[1].split()[:4] == [
        "Barista_ssi", "text", str(tmp_path / "models" / "barista"), "ssi-bot"]
    again = playhouse("personas", "import-ssi", str(ini), "--out", "personas", cwd=tmp_path)
    assert again.returncode == 1 and "pass --force to replace it" in again.stdout
    missing = playhouse("personas", "import-ssi", "nope.ini", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith("playhouse: cannot read the ssi-bot config nope.ini")


def test_personas_check_defaults_to_the_personas_folder() -> None:
    result = playhouse("personas", "check", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ImageBot" in result.stdout


def test_personas_check_reports_every_bad_file_and_lists_the_good(bad_folder: Path) -> None:
    result = playhouse("personas", "check", str(bad_folder), cwd=bad_folder.parent)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    found = {}
    for line in error_lines(result.stdout):
        match = ERROR_LINE.match(line)
        assert match is not None
        found[(match["file"], match["field"])] = match["reason"]
    assert set(found) == set(EXPECTED_ERRORS)
    for key, reason in EXPECTED_ERRORS.items():
        assert reason in found[key]
    table = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"GoodBot", "ImageBot"} <= table
    assert not {"TypoBot", "ExtraBot", "NoModelBot", "LostBot"} & table


def test_personas_check_on_a_missing_folder_exits_1(tmp_path: Path) -> None:
    result = playhouse("personas", "check", str(tmp_path / "absent"), cwd=tmp_path)
    assert result.returncode == 1
    assert "no such directory" in result.stdout


# --- config ------------------------------------------------------------------------------


def test_config_masks_the_account_key(tmp_path: Path) -> None:
    conn = (
        "DefaultEndpointsProtocol=https;AccountName=acct;"
        f"AccountKey={ACCOUNT_KEY};EndpointSuffix=core.windows.net"
    )
    result = playhouse("config", cwd=tmp_path, env={"PLAYHOUSE_STORAGE": conn})
    assert result.returncode == 0, result.stderr
    assert ACCOUNT_KEY not in result.stdout + result.stderr
    rows = result.stdout.splitlines()
    (line,) = [ln for ln in rows if ln.startswith("storage.connection_string")]
    assert "AccountName=acct" in line
    assert "AccountKey=***" in line


def test_config_shows_environment_over_defaults(tmp_path: Path) -> None:
    result = playhouse("config", cwd=tmp_path, env={"PLAYHOUSE_WEB_PORT": "8123"})
    assert result.returncode == 0, result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("web.port ")]
    assert line.split()[1] == "8123"


def test_config_rejects_a_wrong_type_in_one_line(tmp_path: Path) -> None:
    result = playhouse("config", cwd=tmp_path, env={"PLAYHOUSE_WEB_PORT": "eighty"})
    assert result.returncode != 0
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("playhouse:")
    assert "web.port" in line


def test_a_malformed_config_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "playhouse.toml").write_text("[web\n", encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
    result = subprocess.run(
        [PYTHON, "-m", "playhouse", "config"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("playhouse:")
    assert "playhouse.toml" in line


# --- daemons that cannot start -------------------------------------------------------------


def test_worker_with_unreachable_storage_fails_fast_in_one_line(tmp_path: Path) -> None:
    conn = closed_port_storage()
    env = {"PLAYHOUSE_STORAGE": conn, "PLAYHOUSE_PERSONAS_DIR": str(SHIPPED)}
    started = time.monotonic()
    result = playhouse("worker", "--kind", "text", "--burst", cwd=tmp_path, env=env, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert elapsed < 15
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("playhouse:")
    assert "Traceback" not in result.stderr
    assert AZURITE_KEY not in result.stderr
    assert AZURITE_ACCOUNT in lines[0] or "127.0.0.1" in lines[0]  # says where it looked


def test_worker_refuses_a_bad_persona_folder_with_the_check_message(
    bad_folder: Path, tmp_path: Path
) -> None:
    check = playhouse("personas", "check", str(bad_folder), cwd=tmp_path)
    expected = error_lines(check.stdout)
    assert len(expected) == len(EXPECTED_ERRORS)

    env = {"PLAYHOUSE_PERSONAS_DIR": str(bad_folder), "PLAYHOUSE_STORAGE": closed_port_storage()}
    result = playhouse("worker", "--kind", "text", "--burst", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("playhouse:")
    assert error_lines(result.stderr) == expected
    assert "unreachable" not in result.stderr  # it stopped at the personas, before storage


def test_missing_subcommand_is_a_usage_error(tmp_path: Path) -> None:
    result = playhouse(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_module_and_console_script_agree(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("playhouse")
    if not script.exists():
        script = ROOT / ".venv" / "bin" / "playhouse"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLAYHOUSE_")}
    result = subprocess.run(
        [str(script), "--config", "/dev/null", "personas", "check", str(SHIPPED)],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    via_module = playhouse("personas", "check", str(SHIPPED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == via_module.stdout
