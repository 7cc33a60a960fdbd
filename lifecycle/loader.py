"""One strict reader for everything imported: registry files, endoflife.date JSON and request bodies.

YAML and JSON follow the same rules, and hostile input (a 4.7 KB alias bomb, a file nested 100,000
deep, 10 MB of one string, binary junk, a truncated file) is refused quickly with an `InputError`
naming the file and the line, before anything is written. Limits are checked while reading — the
size before the file is read, depth and string length as each YAML event arrives, JSON depth before
`json` parses — never after building a huge object. The rules, and why:

- **Size**: at most `LIFECYCLE_IMPORT_MAX_BYTES` (default 50 MB; the reference fleet file is 10 MB).
- **Text**: UTF-8 (a UTF-8 byte order mark is skipped). NUL bytes, invalid UTF-8, UTF-16/32, control
  characters other than tab and line breaks, and lone surrogates (`"\\ud800"` in JSON) are refused: the
  file is binary, mis-encoded or corrupted, and a NUL would break PostgreSQL text anyway.
- **Truncation**: a YAML *file* must end with a line break. A YAML file cut short mid-line usually
  still parses, as different data (`name: Alauda Co` for `name: Alauda Container Platform`), while
  editors and `yaml.dump` end every file with a line break (an editor that does not is told how to
  fix it). A cut exactly at a line end cannot be told from a shorter file: the import summary's counts
  show it. A truncated JSON document does not parse, so JSON needs no such rule (`json.dump` writes no
  final line break). Request bodies carry their length, so neither rule applies to them.
- **Shape**: at most 64 levels of nesting, 100,000 characters in one string, integers that fit in 64
  bits (a 5,000-digit integer is a typo or an attack), finite numbers only (no `.inf`, `NaN`, `1e400`).
- **YAML is data, not a program**: no anchors or aliases (a registry never needs them, and the billion
  laughs expand 4.7 KB into gigabytes), no merge keys (`<<`), no tags but `!!str`, one document.
  Keys are text exactly as written (`on:` is the key "on", `3.10:` is "3.10"). Plain values follow a
  strict schema: empty/`~`/`null`; true/false (YAML 1.1's yes/no/on/off too, so that the validators can
  refuse them where text belongs); decimal integers and decimals; dates only as `YYYY-MM-DD` (an
  impossible date such as 2027-06-31 is an error on its line). Everything else is text: `0x1f`, `010`,
  `1_000`, `1:30`, `2027-W26` and `2027-06-30 10:00` stay as written instead of silently becoming 31,
  8, 1000, 90, a string the user did not mean or a datetime.
- **Duplicate keys** are refused anywhere, also two on one line (`{a: 1, a: 2}`), naming both lines
  (PyYAML and `json` silently keep the last one).

Types per field (a mapping where a name belongs, `True` as a customer key) are the validators' job
(`lifecycle.validation`), which name the path (`customers[3].name: expected text, got a mapping`).
"""

from __future__ import annotations

import codecs
import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from lifecycle.errors import InputError, InputErrors

try:  # libyaml: the same events as the pure-Python parser, many times faster
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


MB = 1024 * 1024
DEFAULT_MAX_BYTES = 50 * MB
MAX_DEPTH = 64
MAX_STRING = 100_000  # characters; the longest field (feedback) takes 10,000
# Entries in one list or mapping. The reference fleet's longest list holds 20,000 customers; a 50 MB
# file of that density 100,000. Reading YAML and checking each entry cost microseconds an entry, so
# without a bound a dense 10 MB file (`products: [0,0,0,...]`, 5 million entries) would take many
# seconds and print millions of errors.
MAX_ITEMS = 200_000
MAX_INT = 2**63 - 1  # what a database integer holds
MAX_ERRORS = 50  # a file with a million duplicate keys gets a readable message, not a million lines

# Characters no import needs: C0 controls but tab and line breaks, DEL, C1 controls, lone surrogates.
_BAD_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_NOT_FINITE = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_WORDS = {
    "": None,
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    **dict.fromkeys(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"), False),
}
_NUMERIC = frozenset("0123456789+-.")
_STR_TAGS = (None, "!", "tag:yaml.org,2002:str")
_COLLECTION_TAGS = {
    MappingStartEvent: (None, "tag:yaml.org,2002:map"),
    SequenceStartEvent: (None, "tag:yaml.org,2002:seq"),
}
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_ONE_BRACKET = str.maketrans("{}", "[]")
_LONG_DIGITS = re.compile(r"[0-9]{19}")
# JSON escapes that decode to a character _BAD_CHAR refuses (a surrogate pair is fine, and checked).
_SUSPECT_ESCAPE = re.compile(r"\\(?:[bf]|u(?:00[01][0-9a-fA-F]|00[7-9][0-9a-fA-F]|[dD][89a-fA-F]))")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_string: int = MAX_STRING
    max_items: int = MAX_ITEMS

    @classmethod
    def from_settings(cls) -> Limits:
        from lifecycle.config import get_settings

        return cls(max_bytes=get_settings().import_max_bytes)


class _Where:
    """Names the source (a file, "body") and, when known, the line of a problem."""

    def __init__(self, source: str, text: str | bytes = ""):
        self.source, self.text = source, text

    def line(self, line: int | None) -> str:
        return f"{self.source}, line {line}" if line else self.source

    def offset(self, offset: int) -> str:
        if isinstance(self.text, bytes):
            return self.line(self.text.count(b"\n", 0, max(offset, 0)) + 1)
        return self.line(self.text.count("\n", 0, max(offset, 0)) + 1)

    def error(self, line: int | None, message: str) -> InputError:
        return InputError(self.line(line), message)


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n:,} bytes"


def _kind(value) -> str:
    kinds: dict[type, str] = {dict: "a mapping", list: "a list"}
    return kinds.get(type(value), "a value")


# ------------------------------------------------------------------------------------------ public


def load_file(path: str | Path, *, limits: Limits | None = None, parallel: bool = False) -> dict:
    """Read an import file: JSON for `.json` (or content starting with `{` or `[` unless the name ends
    in `.yaml`/`.yml`), YAML otherwise. The top level must be a mapping. `parallel`: a large YAML file's
    customers may be read by forked processes (`lifecycle.splitread`; the same value or error), for a
    command that owns its process (not a server's thread)."""
    path = Path(path)
    limits = limits or Limits.from_settings()
    # A file name that is not UTF-8 arrives with surrogate escapes: name it printably.
    where = _Where(str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))
    try:
        with path.open("rb") as f:
            data = f.read(limits.max_bytes + 1)  # never more: /dev/zero is not read forever
    except FileNotFoundError:
        raise where.error(None, "no such file") from None
    except IsADirectoryError:
        raise where.error(None, "is a directory, not a file") from None
    except OSError as exc:
        raise where.error(None, f"cannot be read: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    fmt = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else None
    return load_bytes(data, source=where.source, fmt=fmt, limits=limits, is_file=True, parallel=parallel)


def load_bytes(
    data: bytes,
    *,
    source: str,
    fmt: str | None = None,
    limits: Limits | None = None,
    is_file: bool = False,
    parallel: bool = False,
) -> dict:
    """Read a YAML or JSON document (`fmt` "yaml", "json" or None: JSON when it starts with `{`/`[`)
    whose top level is a mapping. `is_file`: a YAML file must end with a line break (truncation)."""
    limits = limits or Limits.from_settings()
    where = _Where(source, data)
    if len(data) > limits.max_bytes:
        raise where.error(None, f"larger than {_size(limits.max_bytes)} (LIFECYCLE_IMPORT_MAX_BYTES)")
    text = _decode(data, where)
    if not text.strip():
        raise where.error(None, "the file is empty" if is_file else "empty")
    if fmt is None:
        fmt = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    where = _Where(source, text)
    if fmt == "json":
        value = _read_json(text, where, limits)
    else:
        if is_file and not text.endswith(("\n", "\r")):
            raise where.error(
                text.count("\n") + 1,
                "the file does not end with a line break: it may be "
                "truncated (if it is complete, add a line break at the end)",
            )
        value = None
        if parallel:
            from lifecycle import splitread

            if len(text) >= splitread.MIN_CHARS:
                value = splitread.read_in_parts(text, lambda part: _read_yaml(part, where, limits), limits)
        if value is None:
            value = _read_yaml(text, where, limits)
    if value is None:
        raise where.error(None, "the file is empty" if is_file else "empty")
    if not isinstance(value, dict):
        raise where.error(None, f"expected a mapping at the top level, got {_kind(value)}")
    return value


def parse_json_bytes(
    data: bytes, *, source: str = "body", max_bytes: int, max_depth: int = MAX_DEPTH
) -> object:
    """Plain JSON with a size and a depth limit checked before parsing (the SendGrid webhook).

    Unlike `load_bytes`, strings are not policed: a provider's bounce reason is recorded as sent."""
    where = _Where(source, data)
    if len(data) > max_bytes:
        raise where.error(None, f"larger than {_size(max_bytes)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise where.error(None, f"not UTF-8 (byte {exc.start})") from None
    _check_json_depth(_json_skeleton(text), _Where(source, text), max_depth)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise where.error(exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise where.error(None, f"nested deeper than {max_depth} levels") from None


# ------------------------------------------------------------------------------------------- text


def _decode(data: bytes, where: _Where) -> str:
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if data.startswith(bom):
            raise where.error(None, f"{name} text: save it as UTF-8")
    data = data.removeprefix(codecs.BOM_UTF8)
    nul = data.find(b"\x00")
    if nul >= 0:
        raise InputError(
            where.offset(nul),
            "contains NUL bytes: a binary file, or UTF-16/32 text without a "
            "byte order mark (save it as UTF-8)",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            where.offset(exc.start),
            f"not UTF-8 text (byte 0x{data[exc.start]:02x}): a binary "
            "file or another encoding (save it as UTF-8)",
        ) from None
    bad = _BAD_CHAR.search(text)
    if bad:
        raise InputError(
            _Where(where.source, text).offset(bad.start()),
            f"contains the control character U+{ord(bad.group()):04X}: a binary or corrupted file",
        )
    return text


def _check_text(value: str, where: _Where, line: int | None, limits: Limits) -> str:
    if len(value) > limits.max_string:
        raise where.error(line, f"a text of {len(value):,} characters (at most {limits.max_string:,})")
    bad = _BAD_CHAR.search(value)
    if bad:
        char = ord(bad.group())
        what = "a lone surrogate" if 0xD800 <= char <= 0xDFFF else "a control character"
        raise where.error(line, f"a text contains {what} (U+{char:04X})")
    return value


def _check_int(literal: str, where: _Where, line: int | None) -> int:
    digits = len(literal.lstrip("+-"))
    if digits > len(str(MAX_INT)):
        raise where.error(line, f"an integer of {digits:,} digits is too large")
    value = int(literal)
    if abs(value) > MAX_INT:
        raise where.error(line, f"the integer {literal} is too large")
    return value


def _check_float(literal: str, where: _Where, line: int | None) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise where.error(line, f"{literal[:40]!r} is not a finite number")
    return value


# ------------------------------------------------------------------------------------------- YAML


class _Frame:
    """An open mapping or list. A mapping alternates: a key (`key` is _NO_KEY until it comes), a value."""

    __slots__ = ("container", "is_map", "key", "seen")

    def __init__(self, container, is_map: bool):
        self.container, self.is_map = container, is_map
        self.key = _NO_KEY if is_map else None  # a list never waits for a key
        self.seen: dict[str, int] = {}


_NO_KEY = object()  # a mapping waiting for its next key
_DUPLICATE = object()  # the key of a duplicate: its value is read, checked and dropped
_TOP_LEVEL = object()


def _read_yaml(text: str, where: _Where, limits: Limits, *, top: type | None = dict) -> object:
    """Build the document from libyaml's events, checking every limit as each event arrives."""
    parser = _Parser(text)
    get_event = parser.get_event
    errors: list[InputError] = []
    stack: list[_Frame] = []
    frame = None
    result = None
    documents = 0
    max_depth, max_string, max_items = limits.max_depth, limits.max_string, limits.max_items
    try:
        while True:
            event: Any = get_event()  # dispatched on its exact type below, not narrowed by isinstance (speed)
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None:
                    raise where.error(
                        event.start_mark.line + 1,
                        f"anchors (&{event.anchor}) are not allowed in an import file",
                    )
                if frame is not None and frame.key is _NO_KEY:  # (only a mapping waits for a key)
                    key = event.value
                    if event.tag is not None or event.style == '"' or key == "<<" or len(key) > max_string:
                        key = _yaml_key(event, where, limits)
                    first = frame.seen.get(key)
                    line = event.start_mark.line + 1
                    if first is None:
                        frame.seen[key] = line
                        frame.key = key
                    else:
                        frame.key = _DUPLICATE
                        errors.append(
                            where.error(line, f"duplicate key {key!r} (first given at line {first})")
                        )
                        if len(errors) >= MAX_ERRORS:
                            break
                    continue
                value = event.value
                if (
                    (event.tag is None and event.implicit[0] and (value in _WORDS or value[:1] in _NUMERIC))
                    or event.tag not in _STR_TAGS
                    or event.style == '"'
                    or len(value) > max_string
                ):
                    value = _yaml_scalar(event, where, limits)
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                is_map = kind is MappingStartEvent
                line = event.start_mark.line + 1
                if event.anchor is not None:
                    raise where.error(line, f"anchors (&{event.anchor}) are not allowed in an import file")
                if event.tag not in _COLLECTION_TAGS[kind]:
                    raise where.error(line, f"the tag {event.tag} is not allowed in an import file")
                if frame is not None and frame.key is _NO_KEY:
                    raise where.error(line, f"a key must be text, not {'a mapping' if is_map else 'a list'}")
                if len(stack) >= max_depth:
                    raise where.error(line, f"nested deeper than {max_depth} levels")
                if not stack and top is not None and (dict if is_map else list) is not top:
                    raise where.error(
                        None,
                        f"expected {_kind(top())} at the top level, got "
                        f"{'a mapping' if is_map else 'a list'}",
                    )
                frame = _Frame({} if is_map else [], is_map)
                stack.append(frame)
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                value = stack.pop().container
                frame = stack[-1] if stack else None
            elif kind is AliasEvent:
                raise where.error(
                    event.start_mark.line + 1, f"aliases (*{event.anchor}) are not allowed in an import file"
                )
            elif kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise where.error(
                        event.start_mark.line + 1, "more than one YAML document (---): one per file"
                    )
                continue
            elif kind is StreamEndEvent:
                break
            else:  # stream start, document end
                continue
            if frame is None:
                result = value
                continue
            container = frame.container
            if len(container) >= max_items:
                raise where.error(
                    event.start_mark.line + 1,
                    f"more than {max_items:,} entries in one {'mapping' if frame.is_map else 'list'}",
                )
            if frame.is_map:
                if frame.key is not _DUPLICATE:
                    container[frame.key] = value
                frame.key = _NO_KEY
            else:
                container.append(value)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit, met while looking ahead
            raise where.error(
                mark.line + 1 if mark else None, f"nested deeper than {max_depth} levels"
            ) from None
        detail = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        column = f" (column {mark.column + 1})" if mark else ""
        raise where.error(mark.line + 1 if mark else None, f"not valid YAML: {detail}{column}") from None
    except yaml.YAMLError as exc:
        raise where.error(None, f"not valid YAML: {exc}") from None
    finally:
        dispose = getattr(parser, "dispose", None)
        if dispose:
            dispose()
    if errors:
        raise InputErrors(errors)
    if top is not None and result is not None and not isinstance(result, top):
        raise where.error(None, f"expected {_kind(top())} at the top level, got a value")
    return result


def _yaml_key(event: ScalarEvent, where: _Where, limits: Limits) -> str:
    assert event.start_mark is not None  # the parser marks every event
    line = event.start_mark.line + 1
    if event.tag not in _STR_TAGS:
        raise where.error(line, f"the tag {event.tag} is not allowed in an import file")
    if event.value == "<<" and event.implicit[0]:
        raise where.error(line, "merge keys (<<) are not allowed in an import file")
    # Only double quotes have escapes (\0, \x01): the raw text was checked when it was decoded.
    if event.style == '"' or len(event.value) > limits.max_string:
        _check_text(event.value, where, line, limits)
    return event.value


def _yaml_scalar(event: ScalarEvent, where: _Where, limits: Limits):
    """A value that needs more than "plain text as it is": resolution, a check, or a refusal."""
    assert event.start_mark is not None  # the parser marks every event
    value, tag, line = event.value, event.tag, event.start_mark.line + 1
    if tag not in _STR_TAGS:
        raise where.error(line, f"the tag {tag} is not allowed in an import file (quote the value instead)")
    if len(value) > limits.max_string:
        _check_text(value, where, line, limits)
    if tag is not None or not event.implicit[0]:  # quoted, a block scalar, or !!str: text
        return _check_text(value, where, line, limits) if event.style == '"' else value
    if value in _WORDS:
        return _WORDS[value]
    if value[0] not in "0123456789+-.":
        return value
    if _INT.fullmatch(value):
        return _check_int(value, where, line)
    if _FLOAT.fullmatch(value):
        return _check_float(value, where, line)
    if _NOT_FINITE.fullmatch(value):
        raise where.error(line, f"{value!r} is not a finite number")
    if _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise where.error(line, f"invalid date {value!r}: {exc}") from None
    return value


# ------------------------------------------------------------------------------------------- JSON


def _json_skeleton(text: str) -> str:
    """The JSON text without its strings: what is left are brackets, numbers, literals and punctuation."""
    return _JSON_STRING.sub("", text) if '"' in text else text


def _check_json_depth(skeleton: str, where: _Where, max_depth: int) -> None:
    """Refuse JSON nested deeper than `max_depth` before `json` recurses into it.

    Of the skeleton only the brackets are kept, all as `[]` (a mismatch is the parser's to report);
    then the innermost pairs are removed once per level, stopping as soon as more than `max_depth`
    openers stand in a row. Every step is a C-speed string operation: a 10 MB file takes well under
    a second."""
    brackets = _NOT_BRACKET.sub("", skeleton).translate(_ONE_BRACKET)
    too_deep = "[" * (max_depth + 1)
    for _ in range(max_depth + 1):
        if too_deep in brackets:
            raise where.error(None, f"nested deeper than {max_depth} levels")
        shorter = brackets.replace("[]", "")
        if len(shorter) == len(brackets):
            return  # empty, or unbalanced: the parser names the line
        brackets = shorter


class _JsonRefused(Exception):
    def __init__(self, error: InputError):
        self.error = error


def _read_json(text: str, where: _Where, limits: Limits) -> object:
    skeleton = _json_skeleton(text)
    _check_json_depth(skeleton, where, limits.max_depth)
    duplicates: list[str] = []

    def pairs(items: list) -> dict:
        obj = dict(items)
        if len(obj) != len(items):
            seen: set = set()
            for k, _ in items:
                if k in seen:
                    duplicates.append(k)
                else:
                    seen.add(k)
            obj = {}
            for key, value in items:
                obj.setdefault(key, value)
        return obj

    def number(check):
        def parse(literal: str):
            try:
                return check(literal, where, None)
            except InputError as exc:
                raise _JsonRefused(InputError(where.offset(text.find(literal)), exc.message)) from None

        return parse

    def constant(name: str):
        raise _JsonRefused(InputError(where.offset(text.find(name)), f"{name} is not a finite number"))

    # Integers go through the check only when the skeleton has a long run of digits (json's own int()
    # is faster); every float is checked (1e400 is infinite).
    hooks = {"parse_int": number(_check_int)} if _LONG_DIGITS.search(skeleton) else {}
    try:
        data = json.loads(
            text, object_pairs_hook=pairs, parse_float=number(_check_float), parse_constant=constant, **hooks
        )
    except json.JSONDecodeError as exc:
        raise where.error(exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except _JsonRefused as exc:
        raise exc.error from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise where.error(None, f"nested deeper than {limits.max_depth} levels") from None
    if duplicates:
        try:  # JSON is YAML: the YAML reader knows the line of each duplicate
            _read_yaml(text, where, limits)
        except InputErrors as exc:
            raise exc from None
        except InputError:
            pass
        raise InputErrors([where.error(None, f"duplicate key {key!r}") for key in duplicates[:MAX_ERRORS]])
    if type(data) is not dict and type(data) is not list:
        return data  # a bare value: the caller says what it expected
    _check_json_items(data, where, limits.max_items)
    # Raw control characters were refused with the text, so only an escape (\u0000, \ud800, \b) can
    # add one; and a string longer than max_string needs as long a run without a quote (or escaped
    # quotes). Anything suspect gets the exact (slower) check.
    if _SUSPECT_ESCAPE.search(text) or '\\"' in text or re.search(f'"[^"]{{{limits.max_string + 1}}}', text):
        _check_json_strings(data, where, limits)
    return data


def _check_json_items(data: object, where: _Where, max_items: int) -> None:
    """No list or mapping longer than `max_items` (what follows the reading costs per entry too)."""
    pending: list[Any] = [data]
    while pending:
        value = pending.pop()
        if len(value) > max_items:
            raise where.error(None, f"more than {max_items:,} entries in one {_kind(value)[2:]}")
        pending.extend(
            item
            for item in (value.values() if type(value) is dict else value)
            if type(item) is dict or type(item) is list
        )


def _check_json_strings(data: object, where: _Where, limits: Limits) -> None:
    """Every key and string within the limits, naming its path (`products[0].name`) when not."""
    max_string = limits.max_string
    pending: list[tuple[Any, str]] = [(data, "")]
    while pending:
        value, path = pending.pop()
        items = value.items() if type(value) is dict else enumerate(value)
        for key, item in items:
            kind = type(item)
            if type(key) is str and (len(key) > max_string or _BAD_CHAR.search(key)):
                _check_json_text(key, where, f"{path}.{key}" if path else key, limits)
            if kind is str:
                if len(item) > max_string or _BAD_CHAR.search(item):
                    _check_json_text(item, where, _json_path(path, key), limits)
            elif kind is dict or kind is list:
                pending.append((item, _json_path(path, key)))


def _json_path(path: str, key) -> str:
    if type(key) is int:
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _check_json_text(value: str, where: _Where, path: str, limits: Limits) -> None:
    try:
        _check_text(value, where, None, limits)
    except InputError as exc:
        path = _BAD_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", path)  # printable, and no terminal escapes
        raise InputError(f"{where.source}: {path}" if path else where.source, exc.message) from None
