"""Sphinx extension of the book: one citation label style everywhere.

Citations in the text are author-year (``bibtex_reference_style: author_year``); this registers the
pybtex style ``course_author_year`` (``bibtex_default_style`` in _config.yml) so that the reference
lists carry the same labels, "Kamb and Ganguli, 2025" or "Song et al., 2021a", sorted by author and
year, instead of alpha labels. "and others" in a BibTeX author list reads "et al.". Two works
whose labels would coincide get year suffixes (2026a, 2026b): tools/build_book.py writes them into
the build's copy of references.bib (:func:`disambiguate`), so the text and the lists agree.
"""
from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _last(person) -> str:
    """A last name as plain text ({\\v c} -> c with a caron)."""
    from pybtex.richtext import Text

    return Text.from_latex(" ".join(person.last_names)).render_as("text")


def author_label(entry) -> str:
    """'Kamb and Ganguli', 'Song et al.', 'Wiener' (editors when there is no author)."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last(p) for p in persons]
    if not names:
        return entry.fields.get("organization", entry.fields.get("institution", entry.key))
    if len(names) > 2 or (len(names) == 2 and names[1].lower() == "others"):
        return f"{names[0]} et al."
    return " and ".join(names)


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield f"{author_label(entry)}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = "course_author_year"
    default_sorting_style = "author_year_title"


def disambiguate(bib_data) -> dict[str, str]:
    """Give works with the same author label and year the suffixes a, b, ... (in the file's order).
    Returns {key: new year} and updates ``bib_data`` in place."""
    groups: dict[tuple[str, str], list] = {}
    for key, entry in bib_data.entries.items():
        groups.setdefault((author_label(entry), entry.fields.get("year", "")), []).append(key)
    changed = {}
    for (_, year), keys in groups.items():
        if len(keys) > 1 and year:
            for i, key in enumerate(keys):
                bib_data.entries[key].fields["year"] = changed[key] = f"{year}{chr(ord('a') + i)}"
    return changed


def setup(app):
    register_plugin("pybtex.style.labels", "course_author_year", AuthorYearLabelStyle)
    register_plugin("pybtex.style.formatting", "course_author_year", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
