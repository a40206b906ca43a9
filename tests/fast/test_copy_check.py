"""The copy claim checker on the flags of the 60-item copy eval (eval-out/copy-60-sampled.json):
word-level false positives of the gate are withdrawn, every real unsupported claim the models
wrote is still flagged, and value judgements / invented units seen in kept copy are caught."""

from __future__ import annotations

import pytest

from agent.copy.check import check_copy

PLANNER = ['Productivity Planner - Daily Planner - Non Dated 5 x 8" - Accomplish your 2018 Goals', "Intelligent Change"]
PENCIL_CUP = ["Rolodex Mesh Collection Jumbo Pencil Cup, Black (62557)", "Rolodex"]
FOLDERS = ["Pendaflex File Folders, Letter Size, Manila, 1/3 Cut, 100/BX (752 1/3-2)", "Pendaflex"]
MECH_PENCIL = ["Paper Mate 56047PP Clearpoint 0.7mm Mechanical Pencil Starter Set, Assorted Colors", "Paper Mate"]
MARKERS = ["Board Dudes SRX Medium Point Dry Erase Markers, Assorted Colors, 6 Count", "The Board Dudes"]
BADGE = ["MIFFLIN Horizontal Badge Holder, Waterproof Plastic Card Holders (Clear, 2.25 x 3.5 inches, 100 Pack)", "MIFFLIN"]
DISPENSER = ["Post-it Pop-up Notes Dispenser DS330-BK, 3 in x 3 in, Black Base Clear Top (DS330-BK), Classic Black", "Post-it"]
PAPER = ["Georgia-Pacific Spectrum Standard 92 Multipurpose Paper, 8.5 x 11 Inches, 1 box of 5 packs (2500 Sheets) (991316)", "Georgia-Pacific"]
PAGE_MARKERS = ["Post-it Page Markers, 1/2 in x 1 3/4 in, Assorted Fluorescent Colors , 50 Sheets/Pad, 5 Pads/Pack (670-5AF)", "Post-it"]
CABINET = ['Sauder 416797 Harbor View Storage Cabinet, L: 35.43" x W: 16.73" x H: 61.02", Antiqued Paint', "Sauder"]
HOLY_CARDS = ["Pack of 54 Assorted Holy Cards with Catholic Saints and Prayers", "Autom"]
REFILLS = ["uni-ball Jetstream RT Ballpoint Pen Refills, Bold Point (1.0mm), Blue, 2 Count", "Uni-ball"]
LABELS = ['MFLABEL 6-UP 100 Sheets Internet Shipping Labels 3-1/3" x 4" FBA Labels (600 Labels)', "MFLABEL"]
FOAM_BOARD = ["Elmer's Colored Foam Board , 20 x 30, Blue, 10-Pack (950053)", "Elmer's"]
CARD_STOCK = ["Neenah Exact Index Card Stock, 8.5 x 11 Inch, 90 lb, White, 250 Sheets (40311)", "Neenah"]
OIL = ["Fellowes Powershred Performance Shredder Oil, 16 oz. Extended Nozzle Bottle (3525010)", "Fellowes"]
PEN = ["Paper Mate 70644 Point Guard Flair Porous Point Stick Pen, Assorted Colors, Medium, 16-Count", "Paper Mate"]
FOOT_REST = ["Fellowes Standard Foot Rest", "Fellowes"]
DESK_ORGANIZER = ["EasyPag Mesh Desk Organizer 3 Drawer Mini Hutch, Silver", "EasyPag"]
PARCHMENT = ["Southworth Fine Parchment Paper, 24 lb , Ivory, 500 sheets (984C)", "Southworth"]

# False positives of the eval: no claim the item's data does not support.
SUPPORTED = [
    (PLANNER, "This daily planner keeps you organized and helps with organization."),
    (PLANNER, "A planner for organizing your goals."),
    (PENCIL_CUP, "Keep your desk organized with this jumbo pencil cup."),
    (FOLDERS, "Manila file folders that help you organize your papers."),
    (MECH_PENCIL, "A mechanical pencil set: no sharpening needed, always sharpened."),
    (MARKERS, "Dry erase markers that write smoothly on glossy surfaces and any other surface."),
    (BADGE, "A waterproof, water resistant plastic badge holder for any surface."),
    (DISPENSER, "A Post-it notes dispenser built to stand the test of time."),
    (PAPER, "Multipurpose paper used in many industries, from schools to offices."),
    (PAGE_MARKERS, "Post-it page markers in different colors."),
    (CABINET, "A storage cabinet that fits next to a window."),
    (HOLY_CARDS, "A 54-card pack of holy cards with Catholic saints."),
    (CARD_STOCK, "Card stock in 8.5 x 11 inches, 90 lb, 250 sheets. Each sheet is 11 inches long."),
    (OIL, "A 16-ounce bottle of shredder oil with an extended nozzle."),
    (DESK_ORGANIZER, "Mesh organizers keep your desk tidy."),
]


@pytest.mark.parametrize(("evidence", "text"), SUPPORTED)
def test_word_level_false_positives_pass(evidence, text):
    report = check_copy(text, evidence)
    assert report.ok, report.unsupported


# Real unsupported claims of the eval and of kept copy: each must stay flagged (substring of a problem).
UNSUPPORTED = [
    (PAGE_MARKERS, "Made from 100% recycled paper.", "number '100'"),
    (PAGE_MARKERS, "These markers are eco friendly.", "eco friendly"),
    (PAGE_MARKERS, "Environmentally friendly page markers.", "environmentally friendly"),
    (PAGE_MARKERS, "Made from recycled paper.", "recycled"),
    (OIL, "An eco friendly oil in a plastic bottle.", "plastic"),
    (REFILLS, "They are a bit pricey, but they write well.", "pricey"),
    (REFILLS, "Refills that are worth the money.", "worth the money"),
    (REFILLS, "Affordable refills for your pen.", "affordable"),
    (REFILLS, "Reusable refills.", "reusable"),
    (LABELS, "Shipping labels that are the best for school and home.", "the best"),
    (LABELS, "The best way to protect your parcels.", "the best"),
    (LABELS, "A limited edition of shipping labels.", "limited edition"),
    (LABELS, "Each sheet holds 100MB of data.", "100MB"),
    (FOAM_BOARD, "These foam boards measure 20 x 30 feet.", "30 feet"),
    (OIL, "A 16 lb bottle of shredder oil.", "16 lb"),
    (PEN, "A stick pen that works like a pencil.", "pencil"),
    (FOOT_REST, "A foot rest with scissors.", "scissors"),
    (DESK_ORGANIZER, "Comes in a variety of colors.", "variety of colors"),
    (BADGE, "A weatherproof badge holder.", "weatherproof"),
    (PARCHMENT, "Parchment paper with a 24-karat gold edge.", "gold"),
    (MECH_PENCIL, "A pencil set with a sharpener and an organizer.", "sharpener"),
    (MECH_PENCIL, "A pencil set with a sharpener and an organizer.", "organizer"),
    (MARKERS, "Markers made for your Microsoft Surface tablet.", "surface"),
    (CABINET, "A storage cabinet that runs Windows.", "windows"),
    (DISPENSER, "A lab tested dispenser.", "tested"),
    (PAPER, "Industrial grade paper.", "industrial"),
    (PENCIL_CUP, "Holds your pens.", "pens"),
    (CARD_STOCK, "Card stock rated 25 lb.", "number '25'"),
    # value judgements, superlatives and comparisons in kept copy of eval-out/copy-200-drafts3.json
    (PARCHMENT, "A premium paper for your certificates.", "premium"),
    (PEN, "A high-end pen for the occasion.", "high-end"),
    (PEN, "The ultimate choice for all your writing needs.", "ultimate"),
    (CABINET, "It is built with the highest quality materials.", "highest quality"),
    (DESK_ORGANIZER, "A high-tech solution for your desk.", "high-tech"),
    (LABELS, "These labels are more durable than most other labels.", "more durable than"),
    (LABELS, "Stronger than ordinary labels.", "stronger than ordinary"),
]


@pytest.mark.parametrize(("evidence", "text", "flag"), UNSUPPORTED)
def test_real_claims_stay_flagged(evidence, text, flag):
    report = check_copy(text, evidence)
    assert not report.ok
    assert any(flag.lower() in p.lower() for p in report.unsupported), report.unsupported


def test_price_judgement_supported_by_the_evidence_passes():
    assert check_copy("An economical bulk pack.", ["Economical bulk pack of 500 clips"]).ok
    assert check_copy("Premium copy paper for your office.", ["Hammermill Premium Copy Paper, 24 lb"]).ok
    # "more than" with a stated number is a count, not a comparison with other products
    assert check_copy("Holds more than 100 sheets.", ["Binder, holds 100 sheets"]).ok
