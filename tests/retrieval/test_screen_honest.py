"""False positives of the text screen on honest catalog text: the items of amazon-office-2014 and
-2018 whose title, brand, category, attributes or description lose a segment at import.

Most of what goes is the data's own calls to action ("Visit for details.", "To view the full
warranty, click here", "Please contact us ...", "Visit Amazon's ... Page" as a brand); the share
is printed and bounded, so a broader pattern that starts eating product text fails here."""

from __future__ import annotations

import pytest

MAX_SHARE = 0.03  # measured 1.8% (2014) and 0.9% (2018) of items


@pytest.mark.parametrize("name", ["amazon-office-2014", "amazon-office-2018"])
def test_few_honest_items_lose_a_segment(name, settings, tmp_path, capsys):
    from retrieval.registry import Registry

    local = settings.model_copy(update={"home": tmp_path})
    registry = Registry(local)
    report = registry._import(name, registry.entry(name).spec, new=False, progress=False, with_events=False)
    left_out = [w for w in report.load.warnings if ": " in w.problem and w.problem.startswith("left out")]
    items = {w.row for w in left_out}
    titles = {w.row for w in left_out if w.field == "title"}
    share = len(items) / report.load.loaded
    with capsys.disabled():
        print(f"\n{name}: {len(items)} of {report.load.loaded} items ({share:.2%}) lose a segment ({len(left_out)} segments; titles {len(titles)})")
    assert report.load.loaded > 2000 and not [e for e in report.load.rejected if "title may be shown" in e.problem]
    assert share <= MAX_SHARE
