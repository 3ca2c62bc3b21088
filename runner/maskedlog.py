"""An action's output as its log file keeps it: every secret of the action masked."""

from __future__ import annotations

import codecs
from pathlib import Path

from shared.secretmask import Masks, StreamMasker


class MaskedLog:
    """An action's output, written to its log file with each of its secrets masked in every form
    shared.secretmask knows, output split anywhere between chunks included."""

    def __init__(self, path: Path, secrets: dict[str, str]) -> None:
        self._file = path.open("w", encoding="utf-8")
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._masker = StreamMasker(Masks(secrets))

    def write(self, chunk: bytes) -> None:
        self._file.write(self._masker.feed(self._decoder.decode(chunk)))

    def close(self) -> None:
        self._file.write(self._masker.feed(self._decoder.decode(b"", final=True)) + self._masker.flush())
        self._file.close()
