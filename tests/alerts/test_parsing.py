"""The parser reads focal points' and responders' SMS in five languages, typos and shorthand included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alerts.parsing import (
    Category,
    Command,
    Kind,
    ParsedMessage,
    Severity,
    load_keywords,
    parse_message,
)
from alerts.textnorm import fold, fold_words, phrase_key, skeleton, tokenize

KEYWORDS = load_keywords()


def parse(text: str) -> ParsedMessage:
    """Parse with the bundled vocabulary."""
    return parse_message(text, KEYWORDS)


# --- text normalisation ----


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Tuées à Mwésó", "tuees a mweso"),
        ("  ENLÈVEMENT   de   5 ", "enlevement de 5"),
        ("Oïcha", "oicha"),
        ("Saké", "sake"),
        ("ÇA BRÛLE", "ca brule"),
        ("Kiwanja\n\tRutshuru", "kiwanja rutshuru"),
    ],
)
def test_fold_strips_accents_case_and_extra_space(text: str, folded: str) -> None:
    assert fold(text) == folded


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Mouvement d'hommes armés", ("mouvement", "hommes", "armes")),
        ("l'attaque d’Oïcha", ("attaque", "oicha")),
        ("qu'ils fuient", ("ils", "fuient")),
        ("jusqu'à Pinga", ("a", "pinga")),
        ("ng'ombe 40", ("ngombe", "40")),
        ("umukobwa w'imyaka 12", ("umukobwa", "imyaka", "12")),
        ("20hommes", ("20", "hommes")),
        ("ok123", ("ok", "123")),
        ("M23", ("m", "23")),
        ("Mweso-Mokoto", ("mweso", "mokoto")),
        ("!!! ??? ...", ()),
    ],
)
def test_tokenize_handles_apostrophes_hyphens_and_glued_digits(text: str, words: tuple[str, ...]) -> None:
    assert fold_words(text) == words


def test_tokens_keep_offsets_into_the_original_text() -> None:
    text = "APPEL 12 ils étaient 5"
    tokens = tokenize(text)
    assert [text[t.start : t.end] for t in tokens] == ["APPEL", "12", "ils", "étaient", "5"]
    assert tokens[0].capitalised
    assert not tokens[2].capitalised


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Kitchanga", "Kitshanga"),
        ("Kitchanga", "Kichanga"),
        ("Oicha", "Oisha"),
        ("Kiwanja", "Kiwandja"),
        ("Nyabiondo", "Nyabyondo"),
        ("Bunagana", "Bunnagana"),
    ],
)
def test_spelling_variants_share_a_skeleton(a: str, b: str) -> None:
    assert skeleton(a) == skeleton(b)


def test_phrase_key_joins_multiword_names_with_one_space() -> None:
    assert phrase_key("Masisi-Centre") == "masisi centre"


# --- kind ----


@pytest.mark.parametrize(
    "text",
    [
        "Bonjour, merci pour votre travail",
        "Bonsoir chef",
        "merci bcp",
        "credit epuise",
        "Votre solde est de 150 unites. Rechargez maintenant et recevez un bonus de 20%",
        "Felicitations! Vous avez gagne 500 Mo internet. Composez *123#",
        "Airtel: profitez de l'offre speciale forfait appels illimites",
        "Vodacom vous offre un bonus de 100% sur votre recharge",
        "Vous avez recu 5000 FC de 0991234567. Nouveau solde 7000 FC",
        "Salio lako ni shilingi 200. Nunua kifurushi sasa",
        "Umeshinda zawadi! Tuma neno OFA kwa 15000",
        "Your balance is low. Top up now to get a free data bundle",
        "Dear customer, your airtime bonus expires today",
        "Habari za asubuhi ndugu",
        "Habari gani",
        "Asante sana",
        "Mbote ndeko",
        "Matondo mingi",
        "Muraho neza",
        "Murakoze cyane",
        "Hello, good morning",
        "Thanks",
        "?",
        "",
        "   ",
        "...",
        "RAS",
        "ras ici",
    ],
)
def test_greetings_credit_notices_and_noise_are_unknown(text: str) -> None:
    parsed = parse(text)
    assert parsed.kind is Kind.UNKNOWN
    assert parsed.category is None
    assert parsed.command is None


@pytest.mark.parametrize(
    "text",
    [
        "ALERTE a Pinga",
        "Alerte!!! venez vite",
        "URGENT urgent",
        "SOS",
        "insecurite grandissante a Kiwanja",
        "Tahadhari huko Mweso",
        "hatari kubwa Kibirizi",
        "alert at Mavivi",
    ],
)
def test_alert_words_without_a_category_make_an_other_alert(text: str) -> None:
    parsed = parse(text)
    assert parsed.kind is Kind.ALERT
    assert parsed.category is Category.OTHER


def test_coordinates_alone_are_an_alert() -> None:
    parsed = parse("GPS -1.39 28.81")
    assert parsed.kind is Kind.ALERT
    assert parsed.coordinates == (-1.39, 28.81)


@pytest.mark.parametrize(
    "text",
    [
        "Bonjour, attaque a Pinga ce matin",
        "Habari, watu wenye silaha wameonekana Pinga",
        "Mbote, babomi bato na Beni",
        "Muraho, abantu bitwaje intwaro bageze i Rubaya",
        "Hello, armed men seen at Oicha",
        "Ok, il y a des hommes armes a Pinga",
        "Recu des menaces de mort hier",
        "Aide urgente attaque a Pinga",
        "Help! armed men attacking Kiwanja",
        "Msaada! watu wenye silaha Kiwanja",
        "Test de tirs? non: vrais tirs a Mweso",
        "Fin de l'attaque, 3 morts a Kibirizi",
    ],
)
def test_an_alert_starting_with_a_greeting_or_command_word_stays_an_alert(text: str) -> None:
    assert parse(text).kind is Kind.ALERT


# --- categories ----

CATEGORY_CASES = [
    # French, with and without accents, with SMS shorthand
    ("3 personnes tuées à Mweso", Category.KILLING),
    ("3 personnes tuees a Mweso", Category.KILLING),
    ("2 morts ds l'attaque de cette nuit", Category.KILLING),
    ("un civil assassine au champ", Category.KILLING),
    ("massacre a Mukondi, bcp de morts", Category.KILLING),
    ("corps sans vie retrouve pres de la riviere", Category.KILLING),
    ("deux cultivateurs egorges a la machette", Category.KILLING),
    ("un enseignant abattu par des inconnus", Category.KILLING),
    ("viol d'une femme au champ hier", Category.SEXUAL_VIOLENCE),
    ("une fille violee par 3 hommes armes", Category.SEXUAL_VIOLENCE),
    ("cas de violences sexuelles signale a Kalembe", Category.SEXUAL_VIOLENCE),
    ("2 femmes violées a Kabizo", Category.SEXUAL_VIOLENCE),
    ("enlevement de 5 femmes au champ", Category.ABDUCTION),
    ("enlevemt de 2 enfants ajd", Category.ABDUCTION),
    ("3 personnes enlevees par des inconnus armes", Category.ABDUCTION),
    ("kidnapping d'un commercant sur la route", Category.ABDUCTION),
    ("un chauffeur pris en otage, rancon demandee", Category.ABDUCTION),
    ("attaque du village par les ADF", Category.ATTACK),
    ("ATTAQUE a Kitchanga ce matin", Category.ATTACK),
    ("attaq en cours a Bambu", Category.ATTACK),
    ("atak ds notre village", Category.ATTACK),
    ("embuscade sur l'axe Kiwanja-Rutshuru", Category.ATTACK),
    ("2 blesses par balle au marche", Category.ATTACK),
    ("affrontements entre FARDC et M23", Category.CLASH),
    ("combats violents depuis 5h", Category.CLASH),
    ("echange de tirs entre militaires et miliciens", Category.CLASH),
    ("on entend des coups de feu vers la colline", Category.CLASH),
    ("tirs nourris entendus cette nuit", Category.CLASH),
    ("maisons incendiees a Nyanzale", Category.ARSON),
    ("20 maisons brulees ds le village", Category.ARSON),
    ("ils ont mis le feu a l'ecole", Category.ARSON),
    ("pillage des boutiques au marche", Category.LOOTING),
    ("vol de betail, 40 vaches emportees", Category.LOOTING),
    ("les miliciens ont pille le centre de sante", Category.LOOTING),
    ("hommes armes signales a Kalungu", Category.ARMED_PRESENCE),
    ("Mouvement d'hommes armes vers Bunagana", Category.ARMED_PRESENCE),
    ("presence de miliciens Nyatura dans la foret", Category.ARMED_PRESENCE),
    ("incursion des rebelles M23 ds la localite", Category.ARMED_PRESENCE),
    ("des Mai-Mai circulent au village", Category.ARMED_PRESENCE),
    ("la population fuit vers Kayna", Category.DISPLACEMENT),
    ("deplacement massif de la population", Category.DISPLACEMENT),
    ("les menages sont en fuite vers la brousse", Category.DISPLACEMENT),
    ("lettre de menace deposee a l'eglise", Category.THREAT),
    ("menaces de mort contre le chef de village", Category.THREAT),
    ("rumeurs d'attaque, la population a peur", Category.THREAT),
    ("intimidation des temoins par des militaires", Category.THREAT),
    # Swahili
    ("watu 4 wameuawa usiku wa leo", Category.KILLING),
    ("ADF wameua watu saba", Category.KILLING),
    ("maiti tatu zimepatikana shambani", Category.KILLING),
    ("Wanawake wawili wamebakwa karibu na Mavivi", Category.SEXUAL_VIOLENCE),
    ("msichana alibakwa jana usiku", Category.SEXUAL_VIOLENCE),
    ("Wanamgambo wamewateka watu 3 huko Mweso", Category.ABDUCTION),
    ("watoto wawili wametekwa nyara", Category.ABDUCTION),
    ("wameshambulia kijiji chetu usiku", Category.ATTACK),
    ("shambulio la ADF Eringeti", Category.ATTACK),
    ("Mapigano makali karibu na Kitshanga tangu jana", Category.CLASH),
    ("milio ya risasi inasikika tangu asubuhi", Category.CLASH),
    ("Nyumba zimechomwa moto Bambo usiku", Category.ARSON),
    ("wamepora mali ya wananchi sokoni", Category.LOOTING),
    ("ng'ombe zimeporwa na majambazi", Category.LOOTING),
    ("Watu wenye silaha wameonekana Pinga", Category.ARMED_PRESENCE),
    ("waasi wamefika kijijini", Category.ARMED_PRESENCE),
    ("Watu wanakimbia kutoka Kiwanja kwenda Rutshuru", Category.DISPLACEMENT),
    ("wakimbizi wengi wamefika kanisani", Category.DISPLACEMENT),
    ("barua ya vitisho imepatikana shuleni", Category.THREAT),
    ("wametishia kuua chifu", Category.KILLING),
    # Lingala
    ("babomi bato mibale na Kasindi", Category.KILLING),
    ("bato misato babomami lobi na butu", Category.KILLING),
    ("babebisi basi mibale na elanga", Category.SEXUAL_VIOLENCE),
    ("bakangi bato mitano na nzela", Category.ABDUCTION),
    ("bitumba makasi na Mbau", Category.CLASH),
    ("mindoki ezali kobeta na mboka", Category.CLASH),
    ("batumbi bandako na Oicha", Category.ARSON),
    ("bayibi bibwele na zando", Category.LOOTING),
    ("Bato ya mindoki bakoti na Mutwanga", Category.ARMED_PRESENCE),
    ("bato bazali kokima mboka", Category.DISPLACEMENT),
    # Kinyarwanda
    ("abantu babiri bishwe n'inyeshyamba", Category.KILLING),
    ("umugabo yishwe mu ijoro", Category.KILLING),
    ("abagore 3 bafashwe ku ngufu", Category.SEXUAL_VIOLENCE),
    ("abana babiri bashimuswe", Category.ABDUCTION),
    ("igitero cy'inyeshyamba mu Rubaya", Category.ATTACK),
    ("imirwano ikomeye hafi ya Kitchanga", Category.CLASH),
    ("amazu yatwitswe ijoro ryakeye", Category.ARSON),
    ("basahuye amaduka ku isoko", Category.LOOTING),
    ("Abantu bitwaje intwaro bageze i Rubaya", Category.ARMED_PRESENCE),
    ("abaturage barahunga berekeza Goma", Category.DISPLACEMENT),
    ("bateye ubwoba abaturage", Category.THREAT),
    # English
    ("Armed men attacked Oicha last night, 6 killed", Category.KILLING),
    ("two women raped near Kiwanja", Category.SEXUAL_VIOLENCE),
    ("3 farmers abducted on the road", Category.ABDUCTION),
    ("ADF attack on the village this morning", Category.ATTACK),
    ("gunfire heard near Mbau since 3am", Category.CLASH),
    ("fighting between army and M23", Category.CLASH),
    ("houses burnt at Mutwanga", Category.ARSON),
    ("shops looted in the market", Category.LOOTING),
    ("gunmen spotted near the school", Category.ARMED_PRESENCE),
    ("people fleeing to Beni", Category.DISPLACEMENT),
    ("threat letter left at the church", Category.THREAT),
    # Mixed languages, as people actually write
    ("attaque ya ADF huko Eringeti, watu 5 wameuawa", Category.KILLING),
    ("hommes armes wameonekana karibu na Pinga", Category.ARMED_PRESENCE),
    ("mapigano entre FARDC et M23 a Kibumba", Category.CLASH),
]


@pytest.mark.parametrize(("text", "category"), CATEGORY_CASES)
def test_category_is_read_in_every_language(text: str, category: Category) -> None:
    parsed = parse(text)
    assert parsed.kind is Kind.ALERT
    assert parsed.category is category


@pytest.mark.parametrize(
    ("text", "category", "secondary"),
    [
        (
            "Armed men attacked Oicha last night, 6 killed",
            Category.KILLING,
            {Category.ATTACK, Category.ARMED_PRESENCE},
        ),
        ("ATTAQUE a Kitchanga, 20 hommes armes", Category.ATTACK, {Category.ARMED_PRESENCE}),
        ("maisons incendiees a Nyanzale, population en fuite", Category.ARSON, {Category.DISPLACEMENT}),
        ("enlevement et viol de 2 femmes", Category.SEXUAL_VIOLENCE, {Category.ABDUCTION}),
        ("pillage puis incendie du marche", Category.ARSON, {Category.LOOTING}),
        ("affrontements, la population fuit", Category.CLASH, {Category.DISPLACEMENT}),
        ("menaces puis attaque du village", Category.ATTACK, {Category.THREAT}),
        ("ADF wameua watu 7 na kuchoma nyumba", Category.KILLING, {Category.ARMED_PRESENCE, Category.ARSON}),
    ],
)
def test_the_most_severe_category_wins_and_the_rest_are_secondary(
    text: str, category: Category, secondary: set[Category]
) -> None:
    parsed = parse(text)
    assert parsed.category is category
    assert secondary <= set(parsed.secondary_categories)
    assert category not in parsed.secondary_categories


def test_secondary_categories_are_in_precedence_order() -> None:
    parsed = parse("hommes armes, pillage, maisons brulees et population en fuite")
    precedences = [c.precedence for c in parsed.secondary_categories]
    assert precedences == sorted(precedences)


@pytest.mark.parametrize(
    ("text", "absent"),
    [
        ("pas de morts mais des blesses a Mweso", Category.KILLING),
        ("aucun mort signale, 2 blesses", Category.KILLING),
        ("attack repelled, no one killed", Category.KILLING),
        ("menaces de mort contre le chef", Category.KILLING),
    ],
)
def test_negated_or_idiomatic_words_do_not_add_a_category(text: str, absent: Category) -> None:
    parsed = parse(text)
    assert parsed.category is not absent
    assert absent not in parsed.secondary_categories


def test_category_precedence_follows_declaration_order() -> None:
    assert [c.precedence for c in Category] == list(range(len(Category)))
    assert Category.KILLING.precedence < Category.ATTACK.precedence < Category.OTHER.precedence


# --- severity ----


@pytest.mark.parametrize(
    ("text", "severity", "urgent"),
    [
        ("3 personnes tuees a Mweso", Severity.CRITICAL, False),
        ("attaque a Pinga", Severity.CRITICAL, False),
        ("attaque a Pinga, venez vite", Severity.CRITICAL, True),
        ("URGENT attaque en cours a Pinga", Severity.CRITICAL, True),
        ("hommes armes signales a Kalungu", Severity.HIGH, False),
        ("hommes armes a Kalungu, urgent", Severity.CRITICAL, True),
        ("une cinquantaine d'hommes armes a Kalungu", Severity.HIGH, False),
        ("lettre de menace a l'eglise", Severity.MEDIUM, False),
        ("ALERTE a Pinga", Severity.LOW, False),
        ("Watu wenye silaha Pinga, haraka!", Severity.CRITICAL, True),
        ("bato ya mindoki na Beni, noki noki", Severity.CRITICAL, True),
        ("abantu bitwaje intwaro i Rubaya, mudutabare", Severity.CRITICAL, True),
        ("armed men near Oicha, emergency", Severity.CRITICAL, True),
        ("pillage au marche!!", Severity.CRITICAL, True),
    ],
)
def test_severity_comes_from_the_category_and_is_raised_by_urgency(
    text: str, severity: Severity, urgent: bool
) -> None:
    parsed = parse(text)
    assert parsed.severity is severity
    assert parsed.urgent is urgent


@pytest.mark.parametrize(
    ("severity", "raised"),
    [
        (Severity.LOW, Severity.MEDIUM),
        (Severity.MEDIUM, Severity.HIGH),
        (Severity.HIGH, Severity.CRITICAL),
        (Severity.CRITICAL, Severity.CRITICAL),
    ],
)
def test_raising_a_severity_goes_up_one_level_and_stops_at_critical(
    severity: Severity, raised: Severity
) -> None:
    assert severity.raised() is raised


def test_severities_order_by_rank_not_alphabetically() -> None:
    assert Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert max(Severity) is Severity.CRITICAL
    assert [s.rank for s in Severity] == [0, 1, 2, 3]


# --- counts ----

COUNT_CASES = [
    ("ATTAQUE a Kitchanga ce matin, 20 hommes armes", 20),
    ("3 personnes tuées à Mweso", 3),
    ("enlevement de 5 femmes au champ", 5),
    ("viol de deux filles hier soir", 2),
    ("Mouvement d'hommes armes vers Bunagana, environ 30", 30),
    ("une cinquantaine de miliciens signales", 50),
    ("une dizaine d'hommes armes", 10),
    ("une vingtaine de maisons? non: une vingtaine de personnes enlevees", 20),
    ("vingt-cinq civils tues", 25),
    ("quatre-vingts menages en fuite", 80),
    ("trois enfants enleves", 3),
    ("env 15 assaillants", 15),
    ("plus de 100 hommes armes", 100),
    ("au moins 7 morts", 7),
    ("7 morts et 3 blesses", 7),
    ("2 tues, 5 blesses", 2),
    ("bilan: 12 morts", 12),
    ("20hommes armes signales", 20),
    ("Watu wenye silaha wameonekana Pinga asubuhi hii, karibu 15", 15),
    ("Wanamgambo wamewateka watu 3 huko Mweso", 3),
    ("watu watano wametekwa", 5),
    ("Wanawake wawili wamebakwa", 2),
    ("watu 4 wameuawa usiku", 4),
    ("watu kumi na tano wameuawa", 15),
    ("watu ishirini na tano wamekimbia", 25),
    ("takriban watu 40 wenye silaha", 40),
    ("babomi bato mibale na Kasindi", 2),
    ("bato misato babomami", 3),
    ("bato mitano bakangami", 5),
    ("abantu babiri bishwe", 2),
    ("abagore 3 bafashwe ku ngufu", 3),
    ("abana batatu bashimuswe", 3),
    ("abantu nka 20 bitwaje intwaro", 20),
    ("Armed men attacked Oicha last night, 6 killed", 6),
    ("two women raped near Kiwanja", 2),
    ("about 40 rebels heading to Kiwanja", 40),
    ("three farmers abducted", 3),
    ("at least 9 civilians killed", 9),
]


@pytest.mark.parametrize(("text", "count"), COUNT_CASES)
def test_count_is_read_from_digits_and_number_words(text: str, count: int) -> None:
    assert parse(text).count == count


@pytest.mark.parametrize(
    "text",
    [
        "fillette de 12 ans violee",
        "fille agee de 14 ans enlevee",
        "mtoto wa miaka 10 amebakwa",
        "msichana wa miaka 13 alibakwa",
        "umukobwa w'imyaka 14 yafashwe ku ngufu",
        "mwana ya mbula 10 abebisami",
        "a 12 year old girl was raped",
        "girl aged 15 abducted",
        "attaque depuis 5h ce matin",
        "tirs entendus a 17h30",
        "gunfire since 3am",
        "mapigano tangu saa 5 asubuhi",
        "vol de betail, 40 vaches emportees",
        "20 maisons brulees",
        "Nyumba 20 zimechomwa moto",
        "hommes armes a 3 km du village",
        "attaque le 12 mars a Pinga",
        "affrontements depuis 3 jours",
        "incursion des M23 ds le village",
        "rancon de 500 dollars demandee",
        "GPS -1.3900 28.8100 incursion miliciens",
        "une attaque a Pinga",
    ],
)
def test_ages_times_distances_dates_animals_and_group_names_are_not_counts(text: str) -> None:
    parsed = parse(text)
    assert parsed.kind is Kind.ALERT
    assert parsed.count is None


# --- coordinates ----


@pytest.mark.parametrize(
    ("text", "coordinates"),
    [
        ("GPS -1.3900 28.8100 incursion miliciens", (-1.39, 28.81)),
        ("GPS -1.39 28.81 attaque", (-1.39, 28.81)),
        ("pos 1.56,30.25 hommes armes", (1.56, 30.25)),
        ("-1.39,28.81 tirs nourris", (-1.39, 28.81)),
        ("attaque ici -1.3912, 28.8105", (-1.3912, 28.8105)),
        ("lat -1.39 lon 28.81 attaque", (-1.39, 28.81)),
        ("lat: -1.39, long: 28.81 pillage", (-1.39, 28.81)),
        ("position S1.39 E28.81 combats", (-1.39, 28.81)),
        ("1.39S 28.81E hommes armes", (-1.39, 28.81)),
        ("coord -1,39 28,81 tirs", (-1.39, 28.81)),
        ("0.49112 29.47311 attack", (0.49112, 29.47311)),
    ],
)
def test_explicit_coordinates_are_read(text: str, coordinates: tuple[float, float]) -> None:
    parsed = parse(text)
    assert parsed.coordinates == pytest.approx(coordinates)


@pytest.mark.parametrize(
    "text",
    [
        "attaque a Pinga, 3 morts",
        "tirs entendus a 17h30",
        "vol de 1,500 dollars",
        "95.5 123.7 attaque",
        "attaque, 2.5 km de Pinga",
    ],
)
def test_numbers_that_are_not_coordinates_are_left_alone(text: str) -> None:
    assert parse(text).coordinates is None


# --- commands ----

COMMAND_CASES = [
    ("OK 123", Command.ACK, 123),
    ("ok123", Command.ACK, 123),
    ("Ok 12", Command.ACK, 12),
    ("OK #45", Command.ACK, 45),
    ("ACK 7", Command.ACK, 7),
    ("Bien recu 45", Command.ACK, 45),
    ("bien reçu alerte 27", Command.ACK, 27),
    ("RECU #45", Command.ACK, 45),
    ("recu no 46", Command.ACK, 46),
    ("ok bien recu 8", Command.ACK, 8),
    ("ndio 12", Command.ACK, 12),
    ("Sawa 13", Command.ACK, 13),
    ("nimepokea 14", Command.ACK, 14),
    ("yego 15", Command.ACK, 15),
    ("received 16", Command.ACK, 16),
    ("noted, 17", Command.ACK, 17),
    ("FIN 7", Command.RESOLVE, 7),
    ("fin 33", Command.RESOLVE, 33),
    ("resolu 33 equipe sur place", Command.RESOLVE, 33),
    ("Résolu 34", Command.RESOLVE, 34),
    ("CLOTURE 35", Command.RESOLVE, 35),
    ("resolved 36", Command.RESOLVE, 36),
    ("imeisha 37", Command.RESOLVE, 37),
    ("esili 38", Command.RESOLVE, 38),
    ("byarangiye 39", Command.RESOLVE, 39),
    ("faux 8", Command.FALSE_ALARM, 8),
    ("FAUX 18", Command.FALSE_ALARM, 18),
    ("fausse alerte 9", Command.FALSE_ALARM, 9),
    ("Fausse alerte n°10", Command.FALSE_ALARM, 10),
    ("false alarm 11", Command.FALSE_ALARM, 11),
    ("uongo 12", Command.FALSE_ALARM, 12),
    ("STATUS 5", Command.STATUS, 5),
    ("status 9", Command.STATUS, 9),
    ("etat 6", Command.STATUS, 6),
    ("hali 7", Command.STATUS, 7),
    ("APPEL 12 ils etaient 5, partis vers Pinga", Command.CALLBACK, 12),
    ("callback 13 spoke to chief", Command.CALLBACK, 13),
]


@pytest.mark.parametrize(("text", "command", "ref"), COMMAND_CASES)
def test_commands_with_an_incident_number(text: str, command: Command, ref: int) -> None:
    parsed = parse(text)
    assert parsed.kind is Kind.COMMAND
    assert parsed.command is command
    assert parsed.ref == ref
    assert parsed.category is None


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("AIDE", Command.HELP),
        ("aide", Command.HELP),
        ("HELP", Command.HELP),
        ("MSAADA", Command.HELP),
        ("Aide svp", Command.HELP),
        ("TEST", Command.TEST),
        ("test", Command.TEST),
        ("Test svp", Command.TEST),
        ("STOP", Command.STOP),
        ("stop merci", Command.STOP),
        ("OK", Command.ACK),
        ("ok merci", Command.ACK),
        ("STATUS", Command.STATUS),
    ],
)
def test_commands_without_a_number(text: str, command: Command) -> None:
    parsed = parse(text)
    assert parsed.kind is Kind.COMMAND
    assert parsed.command is command
    assert parsed.ref is None


@pytest.mark.parametrize(
    ("text", "argument"),
    [
        ("REG Jean Mweso", "Jean Mweso"),
        ("reg Marie Kiwanja", "Marie Kiwanja"),
        ("ENREG Paul Kambale, Kitchanga", "Paul Kambale, Kitchanga"),
        ("JISAJILI Amani Pinga", "Amani Pinga"),
        ("register John Oicha", "John Oicha"),
    ],
)
def test_register_keeps_name_and_village_as_written(text: str, argument: str) -> None:
    parsed = parse(text)
    assert parsed.command is Command.REGISTER
    assert parsed.argument == argument
    assert parsed.ref is None


@pytest.mark.parametrize(
    ("text", "argument"),
    [
        ("APPEL 12 ils etaient 5, partis vers Pinga", "ils etaient 5, partis vers Pinga"),
        ("appel 12: ils étaient 5", "ils étaient 5"),
        ("resolu 33 equipe sur place", "equipe sur place"),
        ("OK 123", None),
        ("FIN 7 merci", None),
    ],
)
def test_command_argument_is_the_free_text_after_the_number(text: str, argument: str | None) -> None:
    assert parse(text).argument == argument


@pytest.mark.parametrize(
    "text",
    [
        "OK 3 morts a Pinga",
        "ok 2 personnes enlevees ce matin",
        "Fin de l'attaque a Pinga",
        "stop aux attaques, 3 morts a Pinga",
    ],
)
def test_a_number_followed_by_victims_is_a_count_not_an_incident_number(text: str) -> None:
    parsed = parse(text)
    assert parsed.kind is Kind.ALERT
    assert parsed.ref is None


# --- place words ----


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("ATTAQUE a Kitchanga ce matin", "kitchanga"),
        ("hommes armes signales à Kalungu", "kalungu"),
        ("enlevement de 5 femmes au champ pres de Kiwanja", "kiwanja"),
        ("pillage des boutiques au marche de Kirumba", "kirumba"),
        ("la population fuit Kanyabayonga vers Kayna", "kanyabayonga"),
        ("Mapigano makali karibu na Kitshanga tangu jana", "kitshanga"),
        ("Wanamgambo wamewateka watu 3 huko Mweso", "mweso"),
        ("Watu wanakimbia kutoka Kiwanja kwenda Rutshuru", "kiwanja"),
        ("babomi bato mibale na Kasindi", "kasindi"),
        ("Abantu bitwaje intwaro bageze i Rubaya", "rubaya"),
        ("imirwano mu Kibumba", "kibumba"),
        ("gunfire heard near Mbau since 3am", "mbau"),
        ("armed men at oicha", "oicha"),
        ("hommes armes a masisi centre", "masisi"),
        ("attaque a Mweso-Mokoto", "mweso mokoto"),
        ("attaque à Oïcha", "oicha"),
        ("attaque a l'ecole de Kalembe", "kalembe"),
        ("ALERTE Sake: vol de betail", "sake"),
        ("ATTAQUE A KITCHANGA", "kitchanga"),
    ],
)
def test_the_most_likely_place_word_comes_first(text: str, first: str) -> None:
    assert parse(text).place_words[0] == first


@pytest.mark.parametrize(
    ("text", "present"),
    [
        ("attaque a Mweso-Mokoto", "mweso"),
        ("attaque ku Kitchanga", "kitchanga"),
        ("mashambulizi Gomani", "goma"),
    ],
)
def test_place_words_include_shorter_and_unglued_forms(text: str, present: str) -> None:
    assert present in parse(text).place_words


@pytest.mark.parametrize(
    "text",
    [
        "attaq ds notre village, bcp de coups de feu",
        "watu wenye silaha wameonekana karibu na kijiji",
        "bato ya mindoki na mboka",
        "armed men in the village last night",
        "hommes armes signales, venez vite svp",
    ],
)
def test_common_words_and_prefixes_are_never_place_words(text: str) -> None:
    words = parse(text).place_words
    for common in ("na", "ya", "kwa", "ds", "village", "kijiji", "mboka", "the", "svp", "vite", "notre"):
        assert common not in words


# --- language and time ----


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("3 personnes tuées à Mweso par des hommes armés", "fr"),
        ("Watu wenye silaha wameonekana Pinga asubuhi hii", "sw"),
        ("babomi bato mibale na Kasindi", "ln"),
        ("Abantu bitwaje intwaro bageze i Rubaya", "rw"),
        ("Armed men attacked Oicha last night", "en"),
        ("Bien recu alerte 27", "fr"),
    ],
)
def test_language_is_the_one_whose_words_dominate(text: str, language: str) -> None:
    assert parse(text).language == language


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("ATTAQUE a Kitchanga ce matin", "ce matin"),
        ("viol de deux filles hier soir", "hier soir"),
        ("affrontements depuis 5h", "5h"),
        ("gunfire heard since 3am", "3am"),
        ("watu 4 wameuawa usiku wa leo", "usiku wa leo"),
        ("Armed men attacked Oicha last night", "last night"),
        ("hommes armes a Pinga", None),
    ],
)
def test_time_hint_is_the_first_time_expression(text: str, hint: str | None) -> None:
    assert parse(text).time_hint == hint


# --- vocabulary ----


def test_a_coordinator_extends_vocabulary_with_a_json_file(tmp_path: Path) -> None:
    (tmp_path / "local.json").write_text(
        json.dumps(
            {
                "language": "sw",
                "categories": {"killing": ["wamechinjwa vibaya"], "armed_presence": ["wazalendo bandia"]},
                "commands": {"ack": ["pokelewa"]},
            }
        ),
        encoding="utf-8",
    )
    extended = load_keywords([tmp_path])
    assert parse_message("wazalendo bandia wamefika Pinga", extended).category is Category.ARMED_PRESENCE
    assert parse_message("pokelewa 44", extended).command is Command.ACK
    assert parse_message("pokelewa 44", KEYWORDS).kind is not Kind.COMMAND


def test_a_bad_glob_in_a_vocabulary_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps({"categories": {"killing": ["*a"]}}), encoding="utf-8")
    with pytest.raises(ValueError, match="glob"):
        load_keywords([tmp_path])


def test_the_bundled_vocabulary_covers_five_languages() -> None:
    assert {"fr", "sw", "ln", "rw", "en"} <= set(KEYWORDS.languages)


def test_parsing_never_fails_on_odd_input() -> None:
    for text in ["\x00", "😀😀", "١٢٣", "ok" * 500, "-" * 300, "1" * 40, "é" * 100, "'''", "d' l' qu'"]:
        assert isinstance(parse(text), ParsedMessage)
