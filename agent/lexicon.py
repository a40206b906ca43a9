"""The one word list of the program: colours, materials, features, product types, units, and the
brand names that are not brands or are also everyday words.

Dialogue rules read features from it, the grounding gate (`agent.grounding`) and the copy
checker decide with it what counts as a claim about an item, and the catalog vocabulary uses it
to tell "Universal folders" (a brand) from "a universal adapter" (a word). Entries are plain
lower-case words or phrases; compare them through `agent.text.stems` on both sides.
"""

from __future__ import annotations

# The brand words live with the import that reads brands off titles (retrieval/brands.py).
from retrieval.brands import COMMON_WORD_BRANDS, NON_BRANDS, is_non_brand, ordinary_word_brands  # noqa: F401

COLOURS = frozenset(
    """black white red blue green yellow orange purple violet pink brown grey gray silver gold golden
    beige ivory navy teal turquoise maroon burgundy tan cream bronze copper clear transparent
    translucent neon pastel multicolor multicolored color colored magenta cyan lavender khaki charcoal""".split()
) | {"rose gold", "multi-color", "assorted colors"}

MATERIALS = frozenset(
    """plastic metal metallic steel stainless aluminum aluminium wood wooden bamboo leather
    faux vinyl rubber silicone glass acrylic cardboard fabric nylon polyester cotton canvas
    cork foam mesh chrome brass zinc titanium magnetic ceramic iron tin polypropylene polycarbonate
    polyethylene pvc abs linen wool felt suede oak walnut maple pine mdf porcelain marble granite stone
    cardstock kraft velvet microfiber fiberglass""".split()
) | {"stainless steel", "faux leather", "pu leather", "tempered glass", "card stock", "carbon fiber", "gold", "silver", "platinum"}

# Features and compatibility a shopper may ask for and a text may claim.
COMPATIBILITY = frozenset(
    """wireless bluetooth usb wifi wi-fi cordless corded rechargeable battery batteries solar
    waterproof water-resistant refillable recycled recyclable acid-free archival ergonomic adjustable
    portable foldable laser inkjet thermal digital electric electronic manual automatic
    compatible mac windows android iphone ipad dect hdmi ethernet""".split()
)

# Feature words a shopper uses that are not colours, materials or compatibilities.
SHOPPING_FEATURES = frozenset(
    """quiet silent heavy-duty compact small large lightweight durable fine medium bold erasable
    washable retractable refill refills duplex color colour fast cheap wide""".split()
)
# How an item says it makes little noise: any of them meets a shopper's "quiet" or "silent".
NOISE_WORDS = frozenset({"quiet", "quieter", "silent", "whisper", "noiseless", "low noise", "low-noise"})
FEATURE_PHRASES = (
    "heavy duty", "heavy-duty", "long battery", "long lasting", "fine point", "fine tip", "extra fine",
    "water resistant", "acid free", "high yield", "noise cancel",
)

PRODUCT_TYPES = frozenset(
    """pen pencil marker highlighter crayon stapler staple printer scanner copier shredder laminator
    calculator phone telephone handset headset envelope label sticker binder folder notebook notepad
    planner calendar tape glue scissors chair lamp ink toner cartridge eraser sharpener clipboard
    whiteboard keyboard mouse cable charger paperclip organizer mailer backpack notecard postcard
    ruler cutter puncher speaker camera projector""".split()
)

# Named sizes and formats ("letter size", "A4", "jumbo"): a size claim like a number.
NAMED_SIZES = frozenset(
    {
        "letter size", "legal size", "letter-size", "legal-size", "tabloid", "ledger size", "a3", "a4", "a5", "a6",
        "b5", "executive size", "jumbo", "king size", "queen size", "twin size", "oversized", "extra large",
        "extra-large", "xl", "xxl", "mini", "pocket size", "pocket-size", "full size", "full-size", "half size",
    }
)

# Devices and platforms a text may claim compatibility with (beyond COMPATIBILITY).
DEVICES = frozenset(
    {
        "ipod", "macbook", "imac", "apple", "airpods", "apple watch", "samsung", "galaxy", "linux", "chromebook",
        "chrome os", "kindle", "pixel", "surface", "playstation", "xbox", "nintendo", "switch", "alexa",
        "google home", "usb-c", "lightning", "nfc", "mac os", "macos", "ios",
    }
)

# Product claims beyond colours, materials and COMPATIBILITY: certifications, safety, popularity,
# origin, warranty, features, proof. A text may make one only when the item's own data states it.
CLAIMS = frozenset(
    {
        # environment / safety / certification
        "water resistant", "weatherproof", "weather resistant", "fireproof", "fire resistant", "fire-resistant",
        "flame retardant", "shatterproof", "scratch resistant", "tear resistant", "rust proof", "rustproof",
        "eco friendly", "eco-friendly", "environmentally friendly", "sustainable", "biodegradable", "compostable",
        "organic", "non toxic", "non-toxic", "nontoxic", "bpa free", "bpa-free", "acid free", "lignin free",
        "hypoallergenic", "antibacterial", "antimicrobial", "food safe", "dishwasher safe", "dishwasher",
        "microwave safe", "certified", "fda", "ul listed", "energy star", "fsc", "ce certified", "approved",
        "patented", "patent",
        # popularity / ranking / origin / warranty
        "best selling", "best-selling", "bestseller", "best seller", "bestselling", "number one", "top rated",
        "top-rated", "award winning", "award-winning", "most popular", "customer favorite", "guaranteed",
        "guarantee", "warranty", "lifetime", "money back", "made in usa", "made in the usa", "made in america",
        "made in china", "made in germany", "made in japan", "handmade", "hand made",
        # features
        "battery powered", "reusable", "washable", "erasable", "collapsible", "lockable", "heavy duty",
        "heavy-duty", "industrial", "commercial grade", "professional grade", "non slip", "non-slip", "anti slip",
        "smudge proof", "smear proof", "fade resistant", "quick drying", "quick-drying", "permanent", "odorless",
        "low odor", "unscented", "scented", "self adhesive", "self-adhesive", "glow in the dark", "led",
        # variants and proof
        "variety of sizes", "variety of colors", "variety of colours", "different sizes", "different colors",
        "different colours", "all sizes", "many colors", "many colours", "clinically proven", "proven",
        "scientifically", "doctor recommended", "dermatologist", "tested", "lab tested", "safe for kids",
        "child safe", "kid safe", "leading manufacturer", "leading brand", "market leader", "industry leading",
        "industry-leading", "world class", "world-class", "renowned", "world famous", "trusted by",
    }
)

# Price / value claims: catalogs rarely state a price, so only the shopper's words or the item's
# own text can support them.
PRICE_WORDS = frozenset(
    """price priced pricing cheap cheaper inexpensive affordable value bargain budget competitive
    discount discounted expensive luxury sale""".split()
)

# Number words a text may use instead of digits ("one" is left out: "this one", "one of").
NUMBER_WORDS = {
    "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "dozen": "12", "twenty": "20",
    "hundred": "100", "thousand": "1000", "single": "1", "double": "2", "triple": "3",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
}

# Words that imply a count in an item's own data ("a pair of", "dual blades", "one-touch") but
# that a text would not state as a number: they support a number, they are never a claim of one.
IMPLIED_COUNTS = {"one": "1", "pair": "2", "pairs": "2", "dual": "2", "twin": "2"}

# Letters after a number that are units or quantities, not a model number ("0.8mm", "12pk", "3rd").
UNIT_WORDS = frozenset(
    """mm cm m in inch inches ft feet yd oz lb lbs g kg ml l pk pack packs ct count pc pcs pieces
    sheet sheets gb mb tb kb ppm dpi ipm x mah v w hz khz ghz mil pt gsm st nd rd th s d k p""".split()
)

# Shopping talk that carries no product meaning ("I need", "please", "something", "under", "brand").
FILLER = frozenset(
    """i im i'm me my we our us you your a an the some any this that these those it its please pls thanks thank
    need needs want wants wanted looking look find show give get got recommend recommendation recommendations suggest suggestion
    can could would should will shall do does did is are was were be been am have has had help like love prefer
    something anything stuff thing things item items product products one ones option options good nice great best decent new
    for with without and or but to of in on at by from about as just really very also maybe perhaps kind sort type
    buy buying purchase shopping shop hi hello hey ok okay so then now instead actually rather what which how any more less
    other another else different there here them they again cheaper cheap price priced cost costs dollars dollar bucks usd
    under below above over between around within budget max maximum minimum least most than up brand brands not no dont don t s
    doesnt didnt isnt wont cant im ive id
    let lets let's see go well yes yeah sure alright hmm um uh tell about""".split()
)

# The words a recommendation reason may use besides its item's record and the shopper's own words
# (`agent.grounding`, closed vocabulary): grammar, the glue of an explanation ("suggested because
# you bought", "its title says") and plain approval. No word here describes a product: a colour,
# a material, a use ("school"), a quality ("durable", "easy") or a size must come from the record.
EXPLANATION_WORDS = frozenset(
    """a an the this that these those it its they them their there here is are was were be been being am
    has have had having do does did will would can could should may might must of in on at by for from
    with to into onto over under up out about as than then so and or but nor if when while because
    since also too very just only even both each every all any some more most less least much many few
    other others another such same own not no yes what which who whom why how where i me my we our us
    you your yours suggested suggest suggesting recommended recommend pick picked picks choice chose
    choose option options match matches fit fits good great nice handy useful perfect ideal suitable
    right asked ask asking meets meet says say said mentions mention mentioned names name named title
    titles description field listed list lists within range limit shown show shows sets set apart
    marks mark unlike close item items product products one ones thing things bought buy buying
    purchased purchase purchases ordered order orders holds hold runs run measuring measures rated
    use used using uses need needs needed want wanted wants looking look search searched request
    requested keep keeps make makes help helps work works get gets come comes include includes
    including feature features offer offers provide provides go goes add adds like similar related
    together alongside before previously recently earlier already last latest previous past history
    based first second third next again well now something anything cost costs handle handles take takes pack
    suit suits suited made designed""".split()
)

# Words a shopper and a catalog use for the same thing (applied after stemming).
SYNONYMS = {
    "telephone": "phone", "cellphone": "phone", "smartphone": "phone", "sneaker": "shoe",
    "racket": "racquet", "notepad": "pad", "grey": "gray", "aluminium": "aluminum",
    "multicolored": "multicolor", "wifi": "wi-fi", "colour": "color", "coloured": "color", "colored": "color",
}
