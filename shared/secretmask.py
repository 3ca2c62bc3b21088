"""Masking build secrets in output that arrives in pieces.

A build that got secrets (docs/secrets.md) may print them, by mistake or
through a tool that echoes its environment. Every node's build log replaces
each occurrence with `[secret NAME]` before anything is written, so that the
log a node serves, the dashboard's live stream and the file on disk never
hold it. Best effort, and said so in the docs: a build that has the value can
always print it in a form this does not know (reversed, one letter a line).

What is masked, for each secret value (`forms`):

- the value itself, and each of its lines of at least MIN_FORM_CHARS for a
  value of several lines (a key file printed a line at a time);
- its base64, standard and URL-safe, with and without padding, and the part
  of it that stays the same wherever the value sits inside a longer base64
  text: the encoding depends on the value's offset modulo 3, so, as GitHub
  Actions does, each of the three offsets gives the run of characters that
  only the value's own bits decide;
- its hexadecimal (lower and upper case) and its percent-encoding (a value
  in a URL);
- the lines of those encodings as the usual tools wrap them: `base64` at 76
  characters, `openssl base64` at 64, `xxd -p` at 60.

Output comes in chunks cut anywhere, so a value can be split between two of
them. `StreamMasker.feed` holds back the end of a chunk for as long as it
could be the beginning of a form, and decides once the next chunk (or the
end, `flush`) says; text that cannot begin a form is passed on at once, so a
live log lags only while it might be showing a secret.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass

# No form shorter than this is masked: every value is at least this long
# (shared/config.py refuses shorter ones), and a shorter line of a value of several
# lines would mask ordinary words.
MIN_FORM_CHARS = 8
# Where `base64` (GNU and busybox), `openssl base64` and `xxd -p` break their lines.
BASE64_WRAPS = (76, 64)
HEX_WRAPS = (60,)
# A value cut off by the end of the output (an output cap, a step that ends) leaves a
# beginning that may never be followed by the rest; one this long is masked too.
PARTIAL_MASK_CHARS = 4


def mask_text(name: str) -> str:
    return f"[secret {name}]"


def forms(value: str) -> set[str]:
    """Every text `value` is masked as (see the module's docstring)."""
    raw = value.encode()
    hexadecimal = binascii.hexlify(raw).decode()
    found = {value, hexadecimal, hexadecimal.upper(), urllib.parse.quote(value, safe="")}
    found.update(value.splitlines())
    found.update(_lines(hexadecimal, HEX_WRAPS))
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        padded = encode(raw).decode()
        found.update({padded, padded.rstrip("=")})
        found.update(_aligned(encode, raw))
    found.update(_lines(base64.b64encode(raw).decode(), BASE64_WRAPS))
    return {form for form in found if len(form) >= MIN_FORM_CHARS}


def _lines(text: str, widths: tuple[int, ...]) -> list[str]:
    """`text` cut into lines of each of `widths`, as a tool that wraps its output writes it."""
    return [text[start:start + width] for width in widths for start in range(0, len(text), width)]


def _aligned(encode, raw: bytes) -> list[str]:
    """The characters of `raw`'s base64 that its own bits alone decide, for each of the three
    offsets (modulo 3) it can have inside a longer text: each character carries 6 bits, so
    those that mix in a byte before or after the value are left out."""
    runs = []
    for offset in range(3):
        text = encode(b"\0" * offset + raw).decode().rstrip("=")
        first = -(-8 * offset // 6)  # the first character that starts at or after the value's first bit
        last = 8 * (offset + len(raw)) // 6  # one past the last that ends at or before its last bit
        runs.append(text[first:last])
    return runs


@dataclass(frozen=True)
class _Form:
    text: str
    name: str


class Masks:
    """The forms of some named secret values, and how to find them in a text."""

    def __init__(self, secrets: dict[str, str]) -> None:
        by_text: dict[str, str] = {}
        for name, value in secrets.items():
            for text in forms(value):
                by_text.setdefault(text, name)
        self._forms = [_Form(text, name) for text, name in sorted(by_text.items(), key=lambda item: -len(item[0]))]
        self.longest = max((len(form.text) for form in self._forms), default=0)
        # Longest first: at each position the lookahead reports the longest form that starts
        # there; being a lookahead, it reports every position, overlapping ones included.
        alternatives = "|".join(re.escape(form.text) for form in self._forms)
        self._pattern = re.compile(f"(?=({alternatives}))") if self._forms else None
        self._names = {form.text: form.name for form in self._forms}
        # Every form by each of its beginnings up to MIN_FORM_CHARS long (all are at least that
        # long): most positions of a text are ruled out by one lookup of a short slice.
        self._by_head: dict[str, list[_Form]] = {}
        for form in self._forms:
            for length in range(1, MIN_FORM_CHARS + 1):
                self._by_head.setdefault(form.text[:length], []).append(form)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def regions(self, text: str) -> list[tuple[int, int, str]]:
        """The stretches of `text` that forms cover, overlapping occurrences merged, each with
        the name of the first secret found in it, in order."""
        if self._pattern is None:
            return []
        merged: list[list] = []
        for match in self._pattern.finditer(text):
            start, end = match.start(), match.start() + len(match.group(1))
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end, self._names[match.group(1)]])
        return [(start, end, name) for start, end, name in merged]

    def unfinished(self, text: str, start: int) -> tuple[int, str] | None:
        """The first position at or after `start` from which the rest of `text` is a form's
        beginning (but not the whole form), and that secret's name; None if there is none."""
        for position in range(max(start, len(text) - self.longest + 1), len(text)):
            candidates = self._by_head.get(text[position:position + MIN_FORM_CHARS])
            if not candidates:
                continue
            rest = text[position:]
            for form in candidates:
                if len(form.text) > len(rest) and form.text.startswith(rest):
                    return position, form.name
        return None

    def mask(self, text: str) -> str:
        """`text`, complete, with every form replaced by its secret's mask."""
        return _replaced(text, self.regions(text))


def _replaced(text: str, regions: list[tuple[int, int, str]]) -> str:
    out, position = [], 0
    for start, end, name in regions:
        out += [text[position:start], mask_text(name)]
        position = end
    out.append(text[position:])
    return "".join(out)


class StreamMasker:
    """Masks a text that arrives in pieces: `feed` each piece, then `flush` at its end."""

    def __init__(self, masks: Masks) -> None:
        self._masks = masks
        self._held = ""

    def feed(self, text: str) -> str:
        """What of the output so far can be written, masked; the rest waits for the next piece."""
        if not self._masks:
            return text
        text, self._held = self._held + text, ""
        regions = self._masks.regions(text)
        unfinished = self._masks.unfinished(text, 0)
        cut = len(text) if unfinished is None else unfinished[0]
        written = []
        for start, end, name in regions:
            if start >= cut:
                break
            written.append((start, end, name))
            if end > cut:
                # A whole occurrence reaches past the cut: it is written masked to its end, and
                # what may still begin a form is looked for after it.
                later = self._masks.unfinished(text, end)
                cut = len(text) if later is None else later[0]
        self._held = text[cut:]
        return _replaced(text[:cut], written)

    def flush(self) -> str:
        """The end of the output: what was held back, masked if it is long enough a beginning
        of a form (a value cut off by the end), as it is otherwise."""
        held, self._held = self._held, ""
        if not held:
            return ""
        unfinished = self._masks.unfinished(held, 0)
        if unfinished is not None and unfinished[0] == 0 and len(held) >= PARTIAL_MASK_CHARS:
            return mask_text(unfinished[1])
        return self._masks.mask(held)
