"""The ReDial movie catalog (6,281 movies) for the conversational eval.

The ReDial split prepared by He et al. (CIKM 2023) names movies only by DBpedia URI
(`<http://dbpedia.org/resource/Police_Academy_(1984_film)>` -> id 29891). The title is in the
URI: percent-escapes and `_` are undone, the disambiguation "(1984 film)" becomes "(1984)"
(the form the dialogues use: "Police Academy (1984)"), a bare "(film)" / "(American film)" is
dropped, and any other qualifier ("(song)", "(novel series)": mis-linked entities the source
kept as movies) stays, so two entities never collapse into one title silently.

Used by the conversational eval only, which builds its own index from it: the movie list is
not a shop catalog and is not in the registry.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote

from retrieval.catalog import Catalog, CatalogError, Item, LoadReport, RowError

DBPEDIA_PREFIX = "<http://dbpedia.org/resource/"
_QUALIFIER = re.compile(r"^(?P<name>.*?)\s*\((?P<qual>[^()]*)\)$")
_YEAR_FILM = re.compile(r"^(?P<year>(?:18|19|20)\d\d)(?:\s+[\w .'-]*)?\s+film$", re.I)
_PLAIN_FILM = re.compile(r"^(?:[\w .'-]+\s+)?film$", re.I)


def title_from_uri(uri: str) -> tuple[str, str | None]:
    """DBpedia URI -> (display title, year or None). Raises ValueError for a non-DBpedia value."""
    if not (uri.startswith(DBPEDIA_PREFIX) and uri.endswith(">")):
        raise ValueError(f"not a DBpedia resource URI: {uri[:80]!r}")
    raw = unquote(uri[len(DBPEDIA_PREFIX) : -1]).replace("_", " ").strip()
    match = _QUALIFIER.match(raw)
    if not match:
        return raw, None
    name, qual = match.group("name").strip(), match.group("qual").strip()
    year_film = _YEAR_FILM.match(qual)
    if year_film:
        return f"{name} ({year_film.group('year')})", year_film.group("year")
    if _PLAIN_FILM.match(qual):
        return name, None
    return raw, None


def load_redial_movies(data_dir: Path, report: LoadReport) -> dict[str, Item]:
    """Items for the ids in `redial/item_ids.json`, titled from `redial/entity2id.json`."""
    folder = Path(data_dir) / "redial"
    entity_path, ids_path = folder / "entity2id.json", folder / "item_ids.json"
    for path in (entity_path, ids_path):
        if not path.is_file():
            raise CatalogError(f"{path}: file not found. Check --data-dir / AISLE_DATA_DIR (it must point at the shared data folder).")
    try:
        entity2id = json.loads(entity_path.read_text(encoding="utf-8"))
        item_ids = json.loads(ids_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{folder}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(entity2id, dict) or not isinstance(item_ids, list):
        raise CatalogError(f"{folder}: expected entity2id.json to be an object and item_ids.json a list")
    uri_of: dict[int, str] = {}
    for uri, eid in entity2id.items():
        if isinstance(eid, int):
            uri_of.setdefault(eid, uri)
    items: dict[str, Item] = {}
    seen_titles: dict[str, str] = {}
    for eid in item_ids:
        uri = uri_of.get(eid) if isinstance(eid, int) else None
        if uri is None:
            report.rejected.append(RowError(ids_path.name, str(eid), "id", "no entity with this id in entity2id.json"))
            continue
        try:
            title, year = title_from_uri(uri)
        except ValueError as exc:
            report.rejected.append(RowError(entity_path.name, str(eid), "uri", str(exc)))
            continue
        item_id = str(eid)
        if title in seen_titles:
            report.warnings.append(RowError(entity_path.name, item_id, "title", f"same title as item {seen_titles[title]}: {title!r}"))
        seen_titles.setdefault(title, item_id)
        items[item_id] = Item(id=item_id, title=title, categories=("Movies",), source={"uri": uri, "year": year})
    return items


def load_redial_catalog(data_dir: Path) -> Catalog:
    """The movie catalog as a `Catalog`."""
    report = LoadReport(catalog="redial")
    items = load_redial_movies(Path(data_dir), report)
    report.loaded = len(items)
    return Catalog(name="redial", items=items, report=report)
