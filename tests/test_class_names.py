"""Short names and colours of a data set's classes (cervixlib.facts.class_abbreviations,
cervixlib.colors.class_colors): the paper's for SIPaKMeD, readable and unique for any
class-per-folder set (Herlev's seven classes, Bethesda names with spaces)."""

from __future__ import annotations

import pytest

from cervixlib.colors import CLASS_PALETTE, PALETTE, class_colors
from cervixlib.facts import CLASS_ABBREVIATIONS, CLASSES, class_abbreviations, class_key_text

HERLEV = ("carcinoma_in_situ", "light_dysplastic", "moderate_dysplastic", "normal_columnar",
          "normal_intermediate", "normal_superficiel", "severe_dysplastic")
BETHESDA = ("Negative for intraepithelial lesion", "ASC-US", "LSIL", "HSIL", "SCC", "Metaplastic cells")


def test_sipakmed_keeps_the_papers_short_names():
    assert tuple(class_abbreviations(CLASSES).values()) == CLASS_ABBREVIATIONS == ("Dys", "Koi", "Met", "Par", "Sup")
    assert class_abbreviations(["Parabasal", "Negative"]) == {"Parabasal": "Par", "Negative": "Neg"}  # also in a mix


def test_multi_word_names_give_initials_and_short_names_stay():
    short = class_abbreviations(BETHESDA)
    assert short == {"Negative for intraepithelial lesion": "NIL", "ASC-US": "ASC-US", "LSIL": "LSIL",
                     "HSIL": "HSIL", "SCC": "SCC", "Metaplastic cells": "MC"}
    assert class_abbreviations(["Low-grade squamous intraepithelial lesion", "Squamous cell carcinoma",
                                "class_10"]) == {"Low-grade squamous intraepithelial lesion": "LSIL",
                                                 "Squamous cell carcinoma": "SCC", "class_10": "C10"}
    assert class_abbreviations(["Koilocytes"]) == {"Koilocytes": "Koi"}  # one long word: its first three letters


@pytest.mark.parametrize("classes", [CLASSES, HERLEV, BETHESDA, BETHESDA + CLASSES,
                                     ("Cellular1", "Cellular2", "Cellular3", "Cell1"),
                                     ("normal cells", "necrotic cells", "nasty cells", "nano cells")])
def test_short_names_are_unique_short_and_in_the_lists_order(classes):
    short = class_abbreviations(classes)
    assert list(short) == list(classes)
    assert len(set(short.values())) == len(classes)
    assert all(1 <= len(s) <= 6 for s in short.values())


def test_herlevs_seven_classes_read_as_initials():
    assert list(class_abbreviations(HERLEV).values()) == ["CIS", "LD", "MD", "NC", "NI", "NS", "SD"]


def test_clashes_are_resolved_by_adding_letters_then_numbers():
    assert class_abbreviations(["normal cells", "necrotic cells"]) == {"normal cells": "NoC", "necrotic cells": "NeC"}
    # the paper's "Met" stays; another class that starts alike takes more letters
    assert class_abbreviations(["Metaplastic", "Metastatic"]) == {"Metaplastic": "Met", "Metastatic": "Meta"}
    assert class_abbreviations(["Metaplasia", "Metastasis"]) == {"Metaplasia": "Metap", "Metastasis": "Metas"}
    assert list(class_abbreviations(["Cellular1", "Cellular2"]).values()) == ["Cell1", "Cell2"]


def test_the_key_gives_full_names_where_they_differ():
    text = class_key_text(class_abbreviations(BETHESDA))
    assert text.startswith("NIL (Negative for intraepithelial lesion), ASC-US, LSIL, HSIL, SCC, MC (Metaplastic cells)")
    assert "<br>" in class_key_text(class_abbreviations(HERLEV), width=40)


def test_class_colours_are_plotlys_safe_palette_by_label_and_not_the_models():
    import plotly.colors

    safe = [f"rgb({int(c[1:3], 16)}, {int(c[3:5], 16)}, {int(c[5:7], 16)})" for c in CLASS_PALETTE]
    assert safe == plotly.colors.qualitative.Safe
    colours = class_colors(HERLEV)
    assert list(colours.values()) == list(CLASS_PALETTE[:7]) and not set(colours.values()) & set(PALETTE)
    assert class_colors([f"c{k}" for k in range(12)])["c11"] == CLASS_PALETTE[0]  # the twelfth starts again
