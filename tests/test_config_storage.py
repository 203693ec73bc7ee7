"""`[store] url` (triage/config/storage.py): a PostgreSQL store, checked when the file is read
and by `triage check`; every refusal names the key and the fix."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from triage.cli import cli
from triage.config import ConfigError, load_config

URL = "postgresql://triage@db.example:5432/triage"


def write(tmp_path, text: str):
    path = tmp_path / "triage.toml"
    path.write_text(text)
    return path


def test_a_url_with_a_password_file_is_the_store(tmp_path):
    config = load_config(write(tmp_path, f'[store]\nurl = "{URL}"\npassword_file = "pw"\n'))
    assert config.database is not None
    assert config.database.url == URL
    assert config.database.password is not None
    assert (config.database.password.where, config.database.password.value) == (
        "file",
        str(tmp_path / "pw"),
    )
    assert config.database.files == tmp_path / "triage.files"
    assert load_config(write(tmp_path, '[store]\ndb = "t.db"\n')).database is None


@pytest.mark.parametrize(
    ("store", "key", "problem", "fix"),
    [
        (f'db = "t.db"\nurl = "{URL}"', "store.url", "db and url name two stores", "keep one"),
        (
            'url = "postgresql://triage:hunter2@db.example/triage"',
            "store.url",
            "holds a password",
            "password_file",
        ),
        (
            'url = "postgresql://triage@db.example/triage?password=hunter2"',
            "store.url",
            "holds a password",
            "password_file",
        ),
        ('url = "mysql://triage@db.example/triage"', "store.url", "is not postgresql://", URL),
        ('url = "postgresql://triage@db.example"', "store.url", "names no database", URL),
        ('url = "postgresql://triage@db.example:port/t"', "store.url", "is not a URL", URL),
        ('password_file = "pw"', "store.password_file", "there is no url", "add url"),
        ('files = "kept"', "store.files", "there is no url", "add url"),
        (
            f'url = "{URL}"\npassword_file = "pw"\npassword_env = "PG"',
            "store.password_env",
            "more than one password source",
            "keep exactly one",
        ),
    ],
)
def test_a_store_table_that_cannot_work_is_refused_by_key(tmp_path, store, key, problem, fix):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, f"[store]\n{store}\n"))
    text = str(caught.value)
    assert f"[{key}]" in text and problem in text and fix in text, text
    assert "hunter2" not in text


def test_check_reads_the_password_source_of_the_url(tmp_path):
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    pw.chmod(0o644)
    path = write(tmp_path, f'[store]\nurl = "{URL}"\npassword_file = "pw"\n')
    done = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert done.exit_code != 0
    assert "[store.password_file] is open to every user" in done.output
    pw.chmod(0o600)
    done = CliRunner().invoke(cli, ["check", "--config", str(path)])
    assert done.exit_code == 0, done.output
    assert URL in done.output and "triage.db" not in done.output
