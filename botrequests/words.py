"""Words, as search (`q=`) reads them: in a query, and in a stored request.

A word is a run of characters between separators; it matches a query word when both are
equal once case and accents are set aside ("Café" and "cafe" are one word). The
separators are white space and punctuation MongoDB's text index also splits on (ASCII
punctuation but `_`, dashes, quotation marks, `…`, `¿`, ...): a word this module finds is
one MongoDB's tokenizer finds too, so the text index can pick candidates that this
module's check then decides (search.py), on either backend. Everything else — letters,
digits, `_`, symbols such as `€` — belongs to words. Pure functions, linear in the text.
"""

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

# Punctuation and spaces MongoDB's unicode tokenizer treats as delimiters (its Pattern_Syntax,
# Quotation_Mark, Dash, Terminal_Punctuation and White_Space code points), those common in
# text; the rest of a word's neighbours join it on both sides alike.
# ASCII: white space (tab to carriage return, space) and Pattern_Syntax (all punctuation
# but `_`); control characters are not MongoDB delimiters, so not separators either.
_ASCII = "\t\n\x0b\x0c\r " + "".join(
    chr(c) for c in range(0x21, 0x7F) if not (chr(c).isalnum() or chr(c) == "_")
)
_OTHER = (
    "\u00a0\u00a1\u00a7\u00ab\u00b6\u00bb\u00bf\u00d7\u00f7"
    + "".join(chr(c) for c in range(0x2000, 0x200B))  # spaces
    + "".join(chr(c) for c in range(0x2010, 0x2028))  # dashes, quotes, bullets, …
    + "\u2028\u2029\u202f\u205f\u3000\u3001\u3002"
    + "".join(chr(c) for c in range(0x2030, 0x203F))
)
SEPARATORS = frozenset(_ASCII + _OTHER)

QUERY_MAX_CHARS = 500
QUERY_MAX_WORDS = 16
# The fields searched: the prompt, the input values and the response (their text, at any
# depth; keys are not searched).
SEARCHED = ("prompt", "inputs", "response")


def fold(word: str) -> str:
    """A word without case or accents: casefolded, decomposed, combining marks dropped."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


# One character class of the separators' complement: the scan runs in the regex engine
# (linear: no alternation, no backtracking).
_WORD = re.compile("[^" + "".join(re.escape(char) for char in sorted(SEPARATORS)) + "]+")


def split(text: str) -> list[str]:
    """The words of `text`, as written, in order."""
    return _WORD.findall(text)


def query_words(q: str) -> list[str]:
    """The distinct folded words of a search, in the order given. Every character that is
    not part of a word (quotes, `-`, `*`, `$`, regex syntax) only separates words: nothing
    in `q` is an operator."""
    seen: dict[str, None] = {}
    for word in split(q):
        seen.setdefault(fold(word), None)
    return [word for word in seen if word]


def _texts(value: Any) -> Iterator[str]:
    """Every string in a JSON value, at any depth (an explicit stack: no recursion limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def document_words(document: dict) -> set[str]:
    """The folded words of a stored request's searched fields."""
    found: set[str] = set()
    for field in SEARCHED:
        for text in _texts(document.get(field)):
            found.update(split(text))
    # Folded once per distinct word (most repeat): a word's fold is its own when ASCII.
    return {word.lower() if word.isascii() else fold(word) for word in found}


def matches(document: dict, words: list[str]) -> bool:
    """Whether a stored request holds every one of `words` (folded query words)."""
    if not words:
        return True
    held = document_words(document)
    return all(word in held for word in words)
