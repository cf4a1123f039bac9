"""CSV files as people have them: UTF-8 with or without a BOM (cp1252, Excel's Western encoding, as a fallback),
any common delimiter (sniffed), headers matched ignoring case, spaces and punctuation; a quoted field keeps its line
breaks and any Unicode separator inside it."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from leadkit.errors import DataError

__all__ = ["CsvTable", "normalize_header", "read_csv"]

DELIMITERS = ",;\t|"
#: Bytes read to sniff the delimiter.
SNIFF_BYTES = 64 * 1024


def normalize_header(name: str) -> str:
    """`Client ID`, ` client_id `, `CLIENT-ID` -> `client_id`."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass
class CsvTable:
    path: Path
    encoding: str
    delimiter: str
    #: normalised header -> the header as written
    headers: dict[str, str]
    #: (line number in the file, {normalised header: stripped value})
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        """What the reader assumed that the user should know (an encoding other than UTF-8)."""
        if self.encoding == "cp1252":
            return f"{self.path} is not UTF-8: read as cp1252 (Windows/Excel Western); save it as UTF-8 to be sure"
        return None


def _decode(path: Path) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path} cannot be read: {exc.strerror or exc}; give a readable CSV file") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is neither UTF-8 nor cp1252 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "save it as CSV UTF-8"
        ) from None


def read_csv(path: Path, *, required: tuple[str, ...] = (), what: str = "CSV") -> CsvTable:
    """Read the whole file. `required` headers (normalised) must be present, else a DataError naming them."""
    if not path.is_file():
        raise DataError(f"{path} is not a readable file; give a {what}")
    text, encoding = _decode(path)
    if not text.strip():
        raise DataError(f"{path} is empty; give a {what} with a header line")
    sample = text[:SNIFF_BYTES]
    try:
        delimiter = csv.Sniffer().sniff(sample.split("\n", 1)[0] or sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    # the csv module splits records itself: a quoted field keeps its line breaks, and a U+2028, U+2029, form
    # feed or vertical tab inside a field stays in it (str.splitlines would cut the record there)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path} has no header line; give a {what}") from None
    headers: dict[str, str] = {}
    for raw in header:
        key = normalize_header(raw)
        if key and key not in headers:
            headers[key] = raw.strip()
    missing = [r for r in required if r not in headers]
    if missing:
        raise DataError(
            f"{path} lacks the column(s) {', '.join(missing)} (found: {', '.join(headers.values()) or 'none'}); "
            f"the header must have {', '.join(required)}"
        )
    keys = [normalize_header(raw) for raw in header]
    table = CsvTable(path, encoding, delimiter, headers)
    try:
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            row = {k: v.strip() for k, v in zip(keys, values, strict=False) if k}
            table.rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num} is not valid CSV: {exc}") from None
    return table
