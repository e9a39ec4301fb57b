"""Pure multilingual parser: one SMS becomes a command, an alert (category, count, place words) or noise."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from rapidfuzz import fuzz, process

from alerts.textnorm import Token, fold_words, tokenize

BUNDLED_KEYWORDS_DIR = Path(__file__).parent / "data" / "keywords"


class Kind(StrEnum):
    """What a message is."""

    ALERT = "alert"
    COMMAND = "command"
    UNKNOWN = "unknown"


class Category(StrEnum):
    """What happened; declaration order is severity precedence (first wins)."""

    KILLING = "killing"
    SEXUAL_VIOLENCE = "sexual_violence"
    ABDUCTION = "abduction"
    ATTACK = "attack"
    CLASH = "clash"
    ARSON = "arson"
    LOOTING = "looting"
    ARMED_PRESENCE = "armed_presence"
    DISPLACEMENT = "displacement"
    THREAT = "threat"
    OTHER = "other"

    @property
    def precedence(self) -> int:
        """Position in the precedence order: 0 is the most severe category."""
        return _CATEGORY_ORDER[self]


_CATEGORY_ORDER: Mapping[Category, int] = MappingProxyType({c: i for i, c in enumerate(Category)})


class Severity(StrEnum):
    """How bad an alert is, ordered LOW < MEDIUM < HIGH < CRITICAL."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Numeric rank, 0 for LOW up to 3 for CRITICAL."""
        return _SEVERITY_ORDER.index(self)

    def raised(self, levels: int = 1) -> Severity:
        """One (or more) levels higher, capped at CRITICAL."""
        return _SEVERITY_ORDER[min(self.rank + levels, len(_SEVERITY_ORDER) - 1)]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


_SEVERITY_ORDER: tuple[Severity, ...] = tuple(Severity)


class Command(StrEnum):
    """What a responder (or a focal point) asks of the system."""

    ACK = "ack"
    RESOLVE = "resolve"
    FALSE_ALARM = "false_alarm"
    STATUS = "status"
    HELP = "help"
    TEST = "test"
    STOP = "stop"
    REGISTER = "register"
    CALLBACK = "callback"


BASE_SEVERITY: Mapping[Category, Severity] = MappingProxyType(
    {
        Category.KILLING: Severity.CRITICAL,
        Category.SEXUAL_VIOLENCE: Severity.CRITICAL,
        Category.ABDUCTION: Severity.CRITICAL,
        Category.ATTACK: Severity.CRITICAL,
        Category.CLASH: Severity.CRITICAL,
        Category.ARSON: Severity.HIGH,
        Category.LOOTING: Severity.HIGH,
        Category.ARMED_PRESENCE: Severity.HIGH,
        Category.DISPLACEMENT: Severity.MEDIUM,
        Category.THREAT: Severity.MEDIUM,
        Category.OTHER: Severity.LOW,
    }
)

# Commands whose number names an incident; the others take free text or nothing.
_TAKES_REF: frozenset[Command] = frozenset(
    {Command.ACK, Command.RESOLVE, Command.FALSE_ALARM, Command.STATUS, Command.CALLBACK}
)
# Without a number, a command is only a command when little else was written (not an alert "Aide ...").
_MAX_BARE_COMMAND_EXTRA_WORDS = 3
_MAX_COUNT = 9999
_MAX_REF_DIGITS = 9
_FUZZY_CATEGORY_MIN_LEN = 5
_FUZZY_CATEGORY_CUTOFF = 85.0
_MAX_PLACE_WORDS = 12
_MAX_NGRAM = 3
_ALL_CAPS_SHARE = 0.7


@dataclass(frozen=True)
class ParsedMessage:
    """What the parser understood from one SMS; place_words are ordered most likely first."""

    kind: Kind
    language: str | None
    category: Category | None
    secondary_categories: tuple[Category, ...]
    severity: Severity | None
    urgent: bool
    count: int | None
    place_words: tuple[str, ...]
    coordinates: tuple[float, float] | None
    time_hint: str | None
    command: Command | None
    ref: int | None
    argument: str | None


class Role(StrEnum):
    """The part a vocabulary phrase plays in a message."""

    CATEGORY = "category"
    URGENCY = "urgency"
    ALERT_MARKER = "alert_marker"
    NUMBER = "number"
    MULTIPLIER = "multiplier"
    CONNECTOR = "connector"
    COUNT_NOUN = "count_noun"
    APPROXIMATOR = "approximator"
    NOT_COUNT_BEFORE = "not_count_before"
    NOT_COUNT_AFTER = "not_count_after"
    COMMAND = "command"
    COMMAND_FILLER = "command_filler"
    POLITE = "polite"
    PLACE_PREFIX = "place_prefix"
    STOPWORD = "stopword"
    NOISE = "noise"
    GREETING = "greeting"
    TIME = "time"
    NEGATION = "negation"


class PrefixTier(StrEnum):
    """How strongly a place prefix says the next word is where it happened."""

    STRONG = "strong"
    MEDIUM = "medium"
    WEAK = "weak"


@dataclass(frozen=True, slots=True)
class Sense:
    """One meaning of a vocabulary phrase: its role, a value (category, number, tier...) and its language."""

    role: Role
    value: str | int
    language: str


GlobIndex = Mapping[str, tuple[tuple[str, Sense], ...]]


@dataclass(frozen=True)
class Keywords:
    """Loaded vocabulary indexed for lookup: exact phrases, stem globs, a fuzzy list of category words."""

    phrases: Mapping[tuple[str, ...], tuple[Sense, ...]]
    max_phrase_len: int
    prefix_globs: GlobIndex
    suffix_globs: GlobIndex
    infix_globs: tuple[tuple[str, Sense], ...]
    glued_place_prefixes: tuple[str, ...]
    glued_place_suffixes: tuple[str, ...]
    elisions: frozenset[str]
    languages: tuple[str, ...]
    fuzzy_category_words: tuple[str, ...]
    fuzzy_category_senses: tuple[Sense, ...]


# JSON sections whose entries are plain lists of phrases, with the role they get.
_LIST_SECTIONS: Mapping[str, Role] = MappingProxyType(
    {
        "urgency": Role.URGENCY,
        "alert_markers": Role.ALERT_MARKER,
        "number_connectors": Role.CONNECTOR,
        "count_nouns": Role.COUNT_NOUN,
        "count_approximators": Role.APPROXIMATOR,
        "not_count_before": Role.NOT_COUNT_BEFORE,
        "not_count_after": Role.NOT_COUNT_AFTER,
        "command_fillers": Role.COMMAND_FILLER,
        "polite": Role.POLITE,
        "stopwords": Role.STOPWORD,
        "noise": Role.NOISE,
        "greetings": Role.GREETING,
        "time_words": Role.TIME,
        "negations": Role.NEGATION,
    }
)
# JSON sections mapping a name (category, command, tier) to a list of phrases.
_GROUP_SECTIONS: Mapping[str, tuple[Role, type[StrEnum]]] = MappingProxyType(
    {
        "categories": (Role.CATEGORY, Category),
        "commands": (Role.COMMAND, Command),
        "place_prefixes": (Role.PLACE_PREFIX, PrefixTier),
    }
)
# JSON sections mapping a phrase to a number.
_NUMBER_SECTIONS: Mapping[str, Role] = MappingProxyType(
    {"numbers": Role.NUMBER, "number_multipliers": Role.MULTIPLIER}
)


def _keyword_files(extra_dirs: Sequence[Path]) -> list[Path]:
    """Bundled vocabulary files first, then each coordinator directory in the order given."""
    files = sorted(BUNDLED_KEYWORDS_DIR.glob("*.json"))
    for directory in extra_dirs:
        files.extend(sorted(Path(directory).glob("*.json")))
    return files


def _entries(data: Mapping[str, object]) -> Iterable[tuple[str, Sense]]:
    """Every (phrase, sense) pair declared by one vocabulary file."""
    language = str(data.get("language", ""))
    for section, role in _LIST_SECTIONS.items():
        for phrase in data.get(section, ()) or ():
            yield str(phrase), Sense(role, "", language)
    for section, (role, enum) in _GROUP_SECTIONS.items():
        groups = data.get(section, {}) or {}
        for name, phrases in groups.items():
            value = enum(name).value
            for phrase in phrases:
                yield str(phrase), Sense(role, value, language)
    for section, role in _NUMBER_SECTIONS.items():
        for phrase, number in (data.get(section, {}) or {}).items():
            yield str(phrase), Sense(role, int(number), language)


def _drop_elisions(tokens: Sequence[Token], elisions: frozenset[str]) -> tuple[Token, ...]:
    """Drop stray elided articles written without apostrophe ("l eglise") unless glued to what follows."""
    kept = []
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.text in elisions and not (nxt is not None and nxt.glued):
            continue
        kept.append(token)
    return tuple(kept)


def _inherit_categories(phrases: dict[tuple[str, ...], dict[Sense, None]]) -> None:
    """Give a longer phrase the categories of the phrases inside it, so longest-match never hides one."""
    for words, senses in phrases.items():
        if len(words) < 2 or any(s.role is Role.CATEGORY for s in senses):
            continue
        for size in range(len(words) - 1, 0, -1):
            for start in range(len(words) - size + 1):
                for sense in phrases.get(words[start : start + size], ()):
                    if sense.role is Role.CATEGORY:
                        senses[sense] = None


def load_keywords(extra_dirs: Sequence[Path] = ()) -> Keywords:
    """Load the bundled vocabulary and merge any coordinator-supplied JSON files in extra_dirs."""
    documents = []
    for path in _keyword_files(extra_dirs):
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
        data.setdefault("language", "" if path.stem == "common" else path.stem)
        documents.append((path, data))
    elisions = frozenset(
        word for _, data in documents for word in (fold_words(" ".join(data.get("elisions", ()))))
    )
    phrases: dict[tuple[str, ...], dict[Sense, None]] = {}
    prefix: dict[str, dict[tuple[str, Sense], None]] = {}
    suffix: dict[str, dict[tuple[str, Sense], None]] = {}
    infix: dict[tuple[str, Sense], None] = {}
    glued_prefixes: dict[str, None] = {}
    glued_suffixes: dict[str, None] = {}
    languages: dict[str, None] = {}
    for path, data in documents:
        if data["language"]:
            languages[data["language"]] = None
        glued_prefixes.update(dict.fromkeys(fold_words(" ".join(data.get("glued_place_prefixes", ())))))
        glued_suffixes.update(dict.fromkeys(fold_words(" ".join(data.get("glued_place_suffixes", ())))))
        for raw, sense in _entries(data):
            stripped = raw.strip()
            if "*" in stripped:
                core = " ".join(fold_words(stripped.strip("*")))
                if " " in core or len(core) < 3:
                    raise ValueError(f"{path}: glob {raw!r} must be one word of at least 3 letters")
                if stripped.startswith("*") and stripped.endswith("*"):
                    infix[(core, sense)] = None
                elif stripped.endswith("*"):
                    prefix.setdefault(core[:3], {})[(core, sense)] = None
                else:
                    suffix.setdefault(core[-3:], {})[(core, sense)] = None
                continue
            words = tuple(t.text for t in _drop_elisions(tokenize(stripped), elisions))
            if words:
                phrases.setdefault(words, {})[sense] = None
    _inherit_categories(phrases)
    fuzzy_words: dict[str, Sense] = {}
    for words, senses in phrases.items():
        for sense in senses:
            if sense.role is Role.CATEGORY and len(words) == 1 and len(words[0]) >= _FUZZY_CATEGORY_MIN_LEN:
                fuzzy_words.setdefault(words[0], sense)
    for index in (prefix, suffix):
        for entries in index.values():
            for core, sense in entries:
                if sense.role is Role.CATEGORY and len(core) >= _FUZZY_CATEGORY_MIN_LEN:
                    fuzzy_words.setdefault(core, sense)
    return Keywords(
        phrases=MappingProxyType({k: tuple(v) for k, v in phrases.items()}),
        max_phrase_len=max((len(k) for k in phrases), default=1),
        prefix_globs=MappingProxyType({k: tuple(v) for k, v in prefix.items()}),
        suffix_globs=MappingProxyType({k: tuple(v) for k, v in suffix.items()}),
        infix_globs=tuple(infix),
        glued_place_prefixes=tuple(glued_prefixes),
        glued_place_suffixes=tuple(glued_suffixes),
        elisions=elisions,
        languages=tuple(languages),
        fuzzy_category_words=tuple(fuzzy_words),
        fuzzy_category_senses=tuple(fuzzy_words.values()),
    )


@dataclass(frozen=True, slots=True)
class _Span:
    """A run of tokens read as one vocabulary phrase (or one unknown word when senses is empty)."""

    first: int
    last: int
    start: int
    end: int
    text: str
    senses: tuple[Sense, ...]
    glued: bool
    roles: frozenset[Role]  # of its senses: `has` is asked about fifty times a message

    def has(self, role: Role) -> bool:
        return role in self.roles

    def values(self, role: Role) -> list[str | int]:
        return [s.value for s in self.senses if s.role is role]

    @property
    def is_digits(self) -> bool:
        return not self.senses and self.text.isdigit()

    @property
    def is_unknown_word(self) -> bool:
        return not self.senses and self.text.isalpha()


def _glob_senses(word: str, keywords: Keywords) -> tuple[Sense, ...]:
    """Senses of a word that only matches a stem pattern (wameuawa ~ *uawa, incendiees ~ incendi*)."""
    if len(word) < 3 or word.isdigit():
        return ()
    found: dict[Sense, None] = {}
    for core, sense in keywords.prefix_globs.get(word[:3], ()):
        if word.startswith(core):
            found[sense] = None
    for core, sense in keywords.suffix_globs.get(word[-3:], ()):
        if word.endswith(core):
            found[sense] = None
    for core, sense in keywords.infix_globs:
        if core in word:
            found[sense] = None
    return tuple(found)


_NO_ROLES: frozenset[Role] = frozenset()


def _scan(tokens: Sequence[Token], keywords: Keywords) -> list[_Span]:
    """Greedy longest-phrase reading of the tokens into spans."""
    spans: list[_Span] = []
    texts = [t.text for t in tokens]
    i = 0
    n = len(tokens)
    while i < n:
        senses: tuple[Sense, ...] = ()
        length = 1
        for size in range(min(keywords.max_phrase_len, n - i), 0, -1):
            found = keywords.phrases.get(tuple(texts[i : i + size]))
            if found:
                senses, length = found, size
                break
        if length == 1:
            globbed = _glob_senses(texts[i], keywords)
            senses = tuple(dict.fromkeys(senses + globbed)) if senses else globbed
        last = i + length - 1
        spans.append(
            _Span(
                first=i,
                last=last,
                start=tokens[i].start,
                end=tokens[last].end,
                text=" ".join(texts[i : i + length]),
                senses=senses,
                glued=tokens[i].glued,
                roles=frozenset(s.role for s in senses) if senses else _NO_ROLES,
            )
        )
        i += length
    return spans


_NUM_DOT = r"[+-]?\d{1,3}\.\d{2,9}"
_NUM_COMMA = r"[+-]?\d{1,3},\d{2,9}"
_LON_LABEL = r"(?:(?:lon(?:g(?:itude)?)?|lng)\s*[:=]?\s*)?"
_COORD_DOT_RE = re.compile(
    rf"(?<![\w.])(?:([ns])\s*)?({_NUM_DOT})\s*°?\s*([ns](?![a-z]))?\s*(?:[,;/]|\s)\s*{_LON_LABEL}"
    rf"(?:([eow])\s*)?({_NUM_DOT})\s*°?\s*([eow](?![a-z]))?(?![\w.])",
    re.IGNORECASE,
)
_COORD_COMMA_RE = re.compile(
    rf"(?<![\w.,])(?:([ns])\s*)?({_NUM_COMMA})\s*°?\s*([ns](?![a-z]))?\s*(?:[;/]|\s)\s*{_LON_LABEL}"
    rf"(?:([eow])\s*)?({_NUM_COMMA})\s*°?\s*([eow](?![a-z]))?(?![\w.,])",
    re.IGNORECASE,
)
_CLOCK_RE = re.compile(
    r"(?<![\w.,:])(?:\d{1,2}\s?[h:]\s?\d{2}|\d{1,2}\s?h(?:rs?)?|\d{1,2}\s?(?:am|pm|a\.m\.|p\.m\.))(?![\w:])",
    re.IGNORECASE,
)


def _find_coordinates(text: str) -> tuple[tuple[float, float] | None, tuple[int, int] | None]:
    """Explicit decimal coordinates ("GPS -1.39 28.81", "1.56,30.25", "1,39S 28,81E") and their span."""
    for pattern in (_COORD_DOT_RE, _COORD_COMMA_RE):
        for match in pattern.finditer(text):
            hem_lat = (match.group(1) or match.group(3) or "").lower()
            hem_lon = (match.group(4) or match.group(6) or "").lower()
            lat = float(match.group(2).replace(",", "."))
            lon = float(match.group(5).replace(",", "."))
            if hem_lat == "s":
                lat = -abs(lat)
            if hem_lon in ("w", "o"):
                lon = -abs(lon)
            if abs(lat) <= 90 and abs(lon) <= 180 and (lat, lon) != (0.0, 0.0):
                return (lat, lon), match.span()
    return None, None


def _mask(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """Blank out spans (coordinates, clock times) without moving any offsets."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


@dataclass(frozen=True, slots=True)
class _NumberGroup:
    """A number written in digits or words, possibly over several spans ("kumi na tano", "une dizaine")."""

    value: int
    first: int
    last: int
    in_words: bool


def _number_groups(spans: Sequence[_Span]) -> list[_NumberGroup]:
    """Combine number words into values (vingt cinq=25, quatre vingt=80, mia tano=500); digits stand alone."""
    groups: list[_NumberGroup] = []
    i = 0
    while i < len(spans):
        span = spans[i]
        if not _is_number_span(span):
            i += 1
            continue
        if span.is_digits:
            groups.append(_NumberGroup(_span_number(span), i, i, in_words=False))
            i += 1
            continue
        total = _span_number(span)
        multiplier_pending = span.has(Role.MULTIPLIER)
        j = i + 1
        while j < len(spans):
            step = 1
            nxt = spans[j]
            if nxt.has(Role.CONNECTOR) and j + 1 < len(spans):
                nxt, step = spans[j + 1], 2
            if nxt.is_digits or not _is_number_span(nxt):
                break
            value = _span_number(nxt)
            if multiplier_pending and step == 1 and value < 10:
                total *= value
            elif value > total and total < 100:
                total = max(total, 1) * value
            else:
                total += value
            multiplier_pending = nxt.has(Role.MULTIPLIER)
            j += step
        groups.append(_NumberGroup(total, i, j - 1, in_words=True))
        i = j
    return groups


def _is_number_span(span: _Span) -> bool:
    """Tell whether a span is a number (digits not glued to a word, or a number word)."""
    if span.is_digits:
        return not span.glued
    return span.has(Role.NUMBER) or span.has(Role.MULTIPLIER)


def _span_number(span: _Span) -> int:
    """The value of a number span."""
    if span.is_digits:
        return int(span.text) if len(span.text) <= 6 else _MAX_COUNT + 1
    values = span.values(Role.NUMBER) or span.values(Role.MULTIPLIER)
    return int(values[0])


def _choose_count(
    spans: Sequence[_Span], groups: Sequence[_NumberGroup], anchor_spans: Sequence[int]
) -> int | None:
    """How many people: a number next to a person noun, a victim word or 'about'; never an age or a time."""
    strong: list[_NumberGroup] = []
    weak: list[_NumberGroup] = []
    for group in groups:
        before = spans[group.first - 1] if group.first > 0 else None
        after = spans[group.last + 1] if group.last + 1 < len(spans) else None
        if group.value <= 0 or group.value > _MAX_COUNT:
            continue
        if (before is not None and before.has(Role.NOT_COUNT_BEFORE)) or (
            after is not None and after.has(Role.NOT_COUNT_AFTER)
        ):
            continue
        linked = spans[group.last + 2] if group.last + 2 < len(spans) else None
        near_person = (
            any(s is not None and s.has(Role.COUNT_NOUN) for s in (before, after))
            or (after is not None and after.has(Role.CATEGORY) and (not group.in_words or group.value > 1))
            or (
                after is not None
                and after.has(Role.STOPWORD)
                and not after.has(Role.NOT_COUNT_AFTER)
                and linked is not None
                and linked.has(Role.COUNT_NOUN)
            )
        )
        approximate = before is not None and before.has(Role.APPROXIMATOR)
        if near_person or approximate:
            strong.append(group)
        elif not group.in_words:
            weak.append(group)
    if strong:
        if anchor_spans:
            best = min(strong, key=lambda g: min(abs(g.first - a) for a in anchor_spans))
            return best.value
        return strong[0].value
    return weak[0].value if weak else None


def _parse_command(text: str, spans: Sequence[_Span]) -> tuple[Command, int | None, str | None] | None:
    """A command at the start of the message ("OK 123", "ok123", "Bien recu alerte 27", "REG Jean Mweso")."""
    i = 0
    while (
        i < len(spans)
        and not spans[i].has(Role.COMMAND)
        and (spans[i].has(Role.POLITE) or spans[i].has(Role.GREETING))
    ):
        i += 1
    if i >= len(spans) or not spans[i].has(Role.COMMAND):
        return None
    names = spans[i].values(Role.COMMAND)
    command = min((Command(v) for v in names), key=list(Command).index)
    j = i + 1
    if command is not Command.REGISTER:
        while j < len(spans) and (
            command.value in spans[j].values(Role.COMMAND) or spans[j].has(Role.POLITE)
        ):
            j += 1
    ref: int | None = None
    consumed = j
    if command in _TAKES_REF:
        k = j
        while k < len(spans) and spans[k].has(Role.COMMAND_FILLER) and not spans[k].is_digits:
            k += 1
        if k < len(spans) and spans[k].is_digits and len(spans[k].text) <= _MAX_REF_DIGITS:
            after = spans[k + 1] if k + 1 < len(spans) else None
            if after is None or not (after.has(Role.COUNT_NOUN) or after.has(Role.CATEGORY)):
                ref = int(spans[k].text)
                consumed = k + 1
    rest = spans[consumed:]
    argument = text[spans[consumed - 1].end :].strip(" \t\r\n,.;:-#!?") or None
    if all(s.has(Role.POLITE) or s.has(Role.COMMAND_FILLER) for s in rest):
        argument = None if command is not Command.REGISTER else argument
    if ref is not None or command is Command.REGISTER:
        return command, ref, argument
    if any(s.has(Role.CATEGORY) or s.has(Role.URGENCY) or s.has(Role.ALERT_MARKER) for s in rest):
        return None
    extra = [s for s in rest if not (s.has(Role.POLITE) or s.has(Role.COMMAND_FILLER))]
    if command is not Command.CALLBACK and len(extra) > _MAX_BARE_COMMAND_EXTRA_WORDS:
        return None
    return command, None, argument


def _detect_language(spans: Sequence[_Span], keywords: Keywords) -> str | None:
    """The language whose vocabulary the message uses most (category words count double)."""
    votes: dict[str, float] = {}
    for span in spans:
        seen: dict[str, float] = {}
        for sense in span.senses:
            if sense.language:
                weight = 2.0 if sense.role is Role.CATEGORY else 1.0
                seen[sense.language] = max(seen.get(sense.language, 0.0), weight)
        for language, weight in seen.items():
            votes[language] = votes.get(language, 0.0) + weight
    if not votes:
        return None
    order = {lang: i for i, lang in enumerate(keywords.languages)}
    return max(votes, key=lambda lang: (votes[lang], -order.get(lang, len(order))))


def _categories(spans: Sequence[_Span], keywords: Keywords) -> list[tuple[Category, int]]:
    """Category words found, with their span index; negated ones ("pas de morts") are skipped."""
    hits: list[tuple[Category, int]] = []
    for index, span in enumerate(spans):
        values = span.values(Role.CATEGORY)
        if not values:
            continue
        if index > 0 and spans[index - 1].has(Role.NEGATION):
            continue
        hits.extend((Category(v), index) for v in values)
    if hits:
        return hits
    for index, span in enumerate(spans):
        if span.is_unknown_word and len(span.text) >= _FUZZY_CATEGORY_MIN_LEN:
            match = process.extractOne(
                span.text,
                keywords.fuzzy_category_words,
                scorer=fuzz.ratio,
                score_cutoff=_FUZZY_CATEGORY_CUTOFF,
            )
            if match is not None:
                hits.append((Category(keywords.fuzzy_category_senses[match[2]].value), index))
    return hits


def _prefix_tier(span: _Span | None) -> PrefixTier | None:
    """The strongest place-prefix tier a span carries, if any."""
    if span is None:
        return None
    tiers = span.values(Role.PLACE_PREFIX)
    for tier in PrefixTier:
        if tier.value in tiers:
            return tier
    return None


_TIER_RANK: Mapping[PrefixTier | None, int] = MappingProxyType(
    {PrefixTier.STRONG: 0, PrefixTier.MEDIUM: 2, None: 3, PrefixTier.WEAK: 4}
)
_CAPITALISED_RANK = 1


def _place_words(text: str, spans: Sequence[_Span], keywords: Keywords) -> tuple[str, ...]:
    """Candidate place phrases, most likely first: after a place prefix, capitalised, then other words."""
    letters = [ch for ch in text if ch.isalpha()]
    mostly_caps = bool(letters) and sum(ch.isupper() for ch in letters) / len(letters) >= _ALL_CAPS_SHARE
    ranked: list[tuple[int, int, list[str]]] = []
    for index, span in enumerate(spans):
        if not span.is_unknown_word or len(span.text) < 2:
            continue
        tier = _prefix_tier(spans[index - 1] if index > 0 else None)
        rank = _TIER_RANK[tier]
        if rank > _CAPITALISED_RANK and not mostly_caps and text[span.start : span.start + 1].isupper():
            rank = _CAPITALISED_RANK if tier is not PrefixTier.WEAK else rank
        words = [span.text]
        for nxt in spans[index + 1 : index + _MAX_NGRAM]:
            if not nxt.text.isalpha() or (nxt.senses and text[nxt.start - 1 : nxt.start] != "-"):
                break
            words.append(nxt.text)
        candidates = [" ".join(words[:size]) for size in range(len(words), 0, -1)]
        candidates.extend(_unglued(span.text, keywords))
        ranked.append((rank, index, candidates))
    ranked.sort(key=lambda item: (item[0], item[1]))
    out: dict[str, None] = {}
    for _, _, candidates in ranked:
        out.update(dict.fromkeys(candidates))
    return tuple(out)[:_MAX_PLACE_WORDS]


def _unglued(word: str, keywords: Keywords) -> list[str]:
    """A word with a locative glued on removed (kukitchanga → kitchanga, gomani → goma)."""
    out = []
    for glued in keywords.glued_place_prefixes:
        if word.startswith(glued) and len(word) - len(glued) >= 3:
            out.append(word[len(glued) :])
    for glued in keywords.glued_place_suffixes:
        if word.endswith(glued) and len(word) - len(glued) >= 3:
            out.append(word[: -len(glued)])
    return out


def _time_hint(text: str, spans: Sequence[_Span], clocks: Sequence[tuple[int, int]]) -> str | None:
    """The first time expression in the message, as written ("ce matin", "5h", "jana usiku")."""
    found = [(s.start, text[s.start : s.end]) for s in spans if s.has(Role.TIME)]
    found.extend((start, text[start:end].strip()) for start, end in clocks)
    return min(found)[1] if found else None


def _unknown(language: str | None = None) -> ParsedMessage:
    """A message that is neither an alert nor a command."""
    return ParsedMessage(
        kind=Kind.UNKNOWN,
        language=language,
        category=None,
        secondary_categories=(),
        severity=None,
        urgent=False,
        count=None,
        place_words=(),
        coordinates=None,
        time_hint=None,
        command=None,
        ref=None,
        argument=None,
    )


def parse_message(text: str, keywords: Keywords) -> ParsedMessage:
    """Understand one SMS: a command, an alert with category/severity/count/place words, or unknown."""
    text = unicodedata.normalize("NFC", text).replace("\u2212", "-")
    if not any(ch.isalnum() for ch in text):
        return _unknown()
    coordinates, coord_span = _find_coordinates(text)
    masked = _mask(text, [coord_span] if coord_span else [])
    clocks = [m.span() for m in _CLOCK_RE.finditer(masked)]
    masked = _mask(masked, clocks)
    tokens = _drop_elisions(tokenize(masked), keywords.elisions)
    spans = _scan(tokens, keywords)
    language = _detect_language(spans, keywords)

    command = _parse_command(text, spans)
    if command is not None:
        name, ref, argument = command
        return replace(_unknown(language), kind=Kind.COMMAND, command=name, ref=ref, argument=argument)

    hits = _categories(spans, keywords)
    noise = sum(1 for s in spans if s.has(Role.NOISE))
    urgent = any(s.has(Role.URGENCY) for s in spans) or "!!" in text
    marked = urgent or any(s.has(Role.ALERT_MARKER) for s in spans) or coordinates is not None
    if noise >= 2 or (noise and not hits) or not (hits or marked):
        return _unknown(language)

    categories = sorted({c for c, _ in hits}, key=lambda c: c.precedence) or [Category.OTHER]
    primary = categories[0]
    count = _choose_count(spans, _number_groups(spans), [i for c, i in hits if c is primary])
    severity = BASE_SEVERITY[primary]
    if urgent:
        severity = severity.raised()
    return ParsedMessage(
        kind=Kind.ALERT,
        language=language,
        category=primary,
        secondary_categories=tuple(categories[1:]),
        severity=severity,
        urgent=urgent,
        count=count,
        place_words=_place_words(text, spans, keywords),
        coordinates=coordinates,
        time_hint=_time_hint(text, spans, clocks),
        command=None,
        ref=None,
        argument=None,
    )
