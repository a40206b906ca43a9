"""Stream rows out of a feed file, one `(row label, dict)` at a time, whatever its format.

Every reader streams (a 100k-row feed never sits in memory as a whole), except `json`, which is one
document by nature (use JSONL for big feeds). A row the reader cannot decode is yielded as a
`RowError`, so the importer reports it with its row number instead of failing the whole file.
Text that is not UTF-8 is read with `surrogateescape` and reported per field by the importer.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrieval.catalog import CatalogError, RowError

FORMATS = ("jsonl", "csv", "tsv", "parquet", "json", "xml")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".parquet": "parquet", ".json": "json", ".xml": "xml"}

Row = tuple[str, "dict[str, Any] | RowError"]

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # product descriptions can be long


def guess_format(path: Path) -> str:
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise CatalogError(f"{path}: cannot tell the format from the extension {path.suffix!r}; pass --format ({' | '.join(FORMATS)})")
    return fmt


def read_rows(path: Path, fmt: str | None = None) -> Iterator[Row]:
    """Rows of `path` (a file, or a folder / glob of files of one format, read in name order)."""
    files = _files(Path(path))
    for file in files:
        kind = fmt or guess_format(file)
        if kind not in FORMATS:
            raise CatalogError(f"unknown format {kind!r}; use one of: {', '.join(FORMATS)}")
        reader = {"jsonl": _jsonl, "csv": _csv, "tsv": _tsv, "parquet": _parquet, "json": _json, "xml": _xml}[kind]
        prefix = f"{file.name}:" if len(files) > 1 else ""
        for label, row in reader(file):
            yield prefix + label, row


def _files(path: Path) -> list[Path]:
    if any(ch in path.name for ch in "*?["):
        files = sorted(path.parent.glob(path.name))
        if not files:
            raise CatalogError(f"{path}: no file matches; check the path")
        return files
    if path.is_dir():
        raise CatalogError(f"{path} is a folder; give a file, or a pattern such as {path}/*.json")
    if not path.is_file():
        raise CatalogError(f"{path}: file not found; check the path")
    return [path]


def _open_text(path: Path):
    # utf-8-sig drops a byte-order mark (spreadsheet exports); bad bytes become surrogates that the
    # importer reports per row and field instead of one UnicodeDecodeError for the whole file.
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")


def _jsonl(path: Path) -> Iterator[Row]:
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield str(lineno), RowError(path.name, str(lineno), "*", f"not a JSON object ({exc.msg} at column {exc.colno})")
                continue
            yield str(lineno), row if isinstance(row, dict) else RowError(path.name, str(lineno), "*", f"expected a JSON object, got {type(row).__name__}")


def _delimited(path: Path, delimiter: str) -> Iterator[Row]:
    with _open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        if not reader.fieldnames:
            raise CatalogError(f"{path}: empty file or no header row")
        for row in reader:
            # The header is line 1; report the line on which the row ends (quoted fields may span lines).
            label = str(reader.line_num)
            if None in row:
                yield label, RowError(path.name, label, "*", f"{len(row[None])} more value(s) than header columns; check the delimiter and quoting")
                continue
            yield label, {k: v for k, v in row.items() if k is not None}


def _csv(path: Path) -> Iterator[Row]:
    yield from _delimited(path, ",")


def _tsv(path: Path) -> Iterator[Row]:
    yield from _delimited(path, "\t")


def _parquet(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
        raise CatalogError(f"{path}: not a Parquet file ({exc})") from exc
    n = 0
    for batch in table.iter_batches(batch_size=2048):
        for row in batch.to_pylist():
            n += 1
            yield str(n), row


def _json(path: Path) -> Iterator[Row]:
    """A list of objects, or an object of id -> object (the id fills a missing "id" field)."""
    try:
        with _open_text(path) as fh:
            doc = json.load(fh)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from exc
    if isinstance(doc, dict):
        for key, row in doc.items():
            if isinstance(row, dict):
                yield str(key), {"id": key, **row} if "id" not in row else row
            else:
                yield str(key), RowError(path.name, str(key), "*", f"expected an object, got {type(row).__name__}")
    elif isinstance(doc, list):
        for n, row in enumerate(doc, start=1):
            yield str(n), row if isinstance(row, dict) else RowError(path.name, str(n), "*", f"expected an object, got {type(row).__name__}")
    else:
        raise CatalogError(f"{path}: expected a list of objects or an object of id -> object, got {type(doc).__name__}")


def _xml(path: Path) -> Iterator[Row]:
    """An RSS 2.0 / Atom product feed (Google Merchant): one row per <item> or <entry>, keys are the
    local tag names (`g:price` -> `price`). defusedxml refuses entity bombs and external entities."""
    from defusedxml.ElementTree import iterparse

    n = 0
    try:
        for _event, elem in iterparse(str(path), events=("end",)):
            if _local(elem.tag) not in ("item", "entry"):
                continue
            n += 1
            row: dict[str, Any] = {}
            for child in elem:
                key = _local(child.tag)
                if key == "link" and child.get("href"):  # Atom links carry the URL in an attribute
                    row[key] = child.get("href")
                elif len(child):  # nested (g:shipping): keep the text of its parts
                    row[key] = " ".join((c.text or "").strip() for c in child if (c.text or "").strip())
                else:
                    row[key] = (child.text or "").strip()
            elem.clear()
            yield str(n), row
    except Exception as exc:  # ParseError, defusedxml's EntitiesForbidden ...
        raise CatalogError(f"{path}: not a readable XML feed after {n} items ({exc.__class__.__name__}: {exc})") from exc


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].casefold()
