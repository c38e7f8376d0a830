"""Settings are a table, and the docs cannot drift from it (STYLE.md items 7 and 11)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from evtrack import settings
from evtrack.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "settings.md"


def doc_rows() -> dict[str, list[str]]:
    """Rows of the settings table, by setting name: the cells, backticks stripped."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and re.fullmatch(r"`[a-z_]+`", cells[0]):
            rows[cells[0].strip("`")] = [c.replace("`", "") for c in cells]
    return rows


def shown(default) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


@pytest.mark.parametrize("setting", settings.SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented(setting):
    row = doc_rows().get(setting.name)
    assert row is not None, f"docs/settings.md has no row for {setting.name}"
    assert row[1] == setting.env
    if setting.default is None:
        assert row[2].startswith("none"), row
    else:
        assert row[2] == shown(setting.default), row
    assert row[3], f"{setting.name}: say what it does"


def test_docs_list_no_setting_that_does_not_exist():
    assert set(doc_rows()) == {s.name for s in settings.SETTINGS}


def test_settings_table_is_well_formed():
    names = [s.name for s in settings.SETTINGS]
    assert len(names) == len(set(names))
    for s in settings.SETTINGS:
        assert s.env == "EVTRACK_" + s.name.upper(), s
        assert s.help.strip(), s
        if s.default is not None:
            assert s.parse(shown(s.default)) == s.default, s


def test_cli_environment_variables_are_documented():
    found = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if envvar:
                found.update([envvar] if isinstance(envvar, str) else envvar)
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(main)
    text = DOC.read_text()
    assert "EVTRACK_TRACKING_URI" in found
    for envvar in found:
        assert f"`{envvar}`" in text, envvar


def test_no_environment_reads_outside_settings():
    package = ROOT / "evtrack"
    offenders = []
    pattern = re.compile(r"os\.environ\.get\(|os\.environ\[|os\.getenv\(|getenv\(")
    for path in package.rglob("*.py"):
        if path.name == "settings.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("flush_interval", "0.25", 0.25),
        ("buffer_events", "10", 10),
        ("fsync", "TRUE", True),
        ("fsync", "yes", True),
        ("fsync", "0", False),
        ("auto_compact", "off", False),
        ("tracking_uri", "", "./evruns"),
        ("user", "", None),
    ],
)
def test_environment_values_are_parsed(monkeypatch, name, raw, expected):
    env = next(s.env for s in settings.SETTINGS if s.name == name)
    monkeypatch.setenv(env, raw)
    assert settings.get(name) == expected


def test_defaults_without_environment(monkeypatch):
    for s in settings.SETTINGS:
        monkeypatch.delenv(s.env, raising=False)
        assert settings.get(s.name) == s.default
