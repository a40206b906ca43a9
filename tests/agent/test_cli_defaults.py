"""`aisle recommend` takes every default from Settings: with nothing passed it ranks without the
LLM and writes template reasons (no LLM is built), and AISLE_* variables are honoured."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agent.engines.base import EngineUnavailable
from agent.entrypoints.cli import app
from agent.settings import Settings


@pytest.fixture
def cli(settings, office_searcher, monkeypatch):
    """Run `aisle ...` in-process on the test home; every attempt to build an LLM is recorded
    (and fails, so a test that needs no LLM can never load the real one)."""
    built: list[str] = []

    def no_llm(s, *args, **kwargs):
        built.append(s.llm)
        raise EngineUnavailable("no LLM in this test")

    monkeypatch.setattr("agent.engines.make_engine", no_llm)
    monkeypatch.setenv("AISLE_HOME", str(settings.home))
    monkeypatch.setenv("AISLE_DATA_DIR", str(settings.data_dir))
    for name in ("AISLE_RANK_MODE", "AISLE_LLM_REASONS", "AISLE_K", "AISLE_N_CANDIDATES"):
        monkeypatch.delenv(name, raising=False)

    def run(*args: str) -> dict:
        result = CliRunner().invoke(app, ["recommend", "--user", "0", "--json", *args])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout[result.stdout.index("{") :])

    run.built = built
    return run


def test_defaults_come_from_settings_and_load_no_llm(cli):
    defaults = Settings()
    out = cli()
    assert (out["mode"], out["llm_reasons"], len(out["items"])) == (defaults.rank_mode, defaults.llm_reasons, defaults.k)
    assert out["n_candidates"] <= defaults.n_candidates
    assert out["items"] and all(i["reason_source"] == "template" and i["grounded"] for i in out["items"])
    assert cli.built == []  # neither ranking nor reasons asked for the LLM


def test_environment_settings_are_honoured(cli, monkeypatch):
    monkeypatch.setenv("AISLE_RANK_MODE", "listwise")
    monkeypatch.setenv("AISLE_K", "3")
    out = cli()
    assert out["mode"] == "listwise" and len(out["items"]) == 3
    assert cli.built and out["fallback"]  # it asked for the LLM, as configured (and fell back without it)
    # an option still overrides the settings
    assert cli("--mode", "none", "--k", "2")["mode"] == "none"


def test_help_names_no_default_of_its_own():
    result = CliRunner().invoke(app, ["recommend", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "onepass]" not in result.stdout and "[default: 5]" not in result.stdout
