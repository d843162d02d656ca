"""Maritime Identification Digits (ITU-R M.585, ITU MID table) and what an MMSI is.

An MMSI arrives as an integer, so its leading zeros are gone: ``2442000`` is the coast
station ``002442000`` and ``24412345`` the group call ``024412345``. :func:`classify` puts
the zeros back and names the kind of station:

========================  ================  ============================================
digits                    kind              note
========================  ================  ============================================
``MIDxxxxxx``             ``ship``          MID 201…775, allocated to a country
``0MIDxxxxx``             ``group``         a group call number; no station sends it
``00MIDxxxx``             ``coast``         base / coast station
``111MIDxxx``             ``sar_aircraft``  SAR aircraft
``8MIDxxxxx``             ``handheld``      handheld VHF with DSC and GNSS
``98MIDxxxx``             ``auxiliary``     craft associated with a parent ship
``99MIDxxxx``             ``aton``          aid to navigation
``970xxyyyy``             ``sart``          AIS-SART (xx manufacturer)
``972xxyyyy``             ``mob``           man-overboard device
``974xxyyyy``             ``epirb``         EPIRB-AIS
========================  ================  ============================================

Anything else — more than nine digits, a MID nobody was allocated, a group number — is
``invalid`` with a reason. Of those, :func:`is_placeholder` picks the numbers transponders
are shipped or left with, which many unrelated devices share. The table below is the list of
allocated MIDs as the ITU publishes it (countries and territories, by region), written out by
hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

#: An MMSI in a config or zone file: at most nine digits (leading zeros are dropped).
Mmsi = Annotated[int, Field(ge=0, le=999_999_999)]

#: MID -> country or territory.
MIDS: dict[int, str] = {
    # Europe
    201: "Albania", 202: "Andorra", 203: "Austria", 204: "Portugal (Azores)", 205: "Belgium",
    206: "Belarus", 207: "Bulgaria", 208: "Vatican City", 209: "Cyprus", 210: "Cyprus",
    211: "Germany", 212: "Cyprus", 213: "Georgia", 214: "Moldova", 215: "Malta",
    216: "Armenia", 218: "Germany", 219: "Denmark", 220: "Denmark", 224: "Spain",
    225: "Spain", 226: "France", 227: "France", 228: "France", 229: "Malta", 230: "Finland",
    231: "Denmark (Faroe Islands)", 232: "United Kingdom", 233: "United Kingdom",
    234: "United Kingdom", 235: "United Kingdom", 236: "Gibraltar", 237: "Greece",
    238: "Croatia", 239: "Greece", 240: "Greece", 241: "Greece", 242: "Morocco",
    243: "Hungary", 244: "Netherlands", 245: "Netherlands", 246: "Netherlands", 247: "Italy",
    248: "Malta", 249: "Malta", 250: "Ireland", 251: "Iceland", 252: "Liechtenstein",
    253: "Luxembourg", 254: "Monaco", 255: "Portugal (Madeira)", 256: "Malta",
    257: "Norway", 258: "Norway", 259: "Norway", 261: "Poland", 262: "Montenegro",
    263: "Portugal", 264: "Romania", 265: "Sweden", 266: "Sweden", 267: "Slovakia",
    268: "San Marino", 269: "Switzerland", 270: "Czechia", 271: "Türkiye", 272: "Ukraine",
    273: "Russia", 274: "North Macedonia", 275: "Latvia", 276: "Estonia", 277: "Lithuania",
    278: "Slovenia", 279: "Serbia",
    # North and Central America, Caribbean
    301: "Anguilla", 303: "United States (Alaska)", 304: "Antigua and Barbuda",
    305: "Antigua and Barbuda", 306: "Netherlands (Caribbean)", 307: "Aruba",
    308: "Bahamas", 309: "Bahamas", 310: "Bermuda", 311: "Bahamas", 312: "Belize",
    314: "Barbados", 316: "Canada", 319: "Cayman Islands", 321: "Costa Rica", 323: "Cuba",
    325: "Dominica", 327: "Dominican Republic", 329: "Guadeloupe", 330: "Grenada",
    331: "Greenland", 332: "Guatemala", 334: "Honduras", 336: "Haiti",
    338: "United States", 339: "Jamaica", 341: "Saint Kitts and Nevis", 343: "Saint Lucia",
    345: "Mexico", 347: "Martinique", 348: "Montserrat", 350: "Nicaragua", 351: "Panama",
    352: "Panama", 353: "Panama", 354: "Panama", 355: "Panama", 356: "Panama", 357: "Panama",
    358: "Puerto Rico", 359: "El Salvador", 361: "Saint Pierre and Miquelon",
    362: "Trinidad and Tobago", 364: "Turks and Caicos Islands", 366: "United States",
    367: "United States", 368: "United States", 369: "United States", 370: "Panama",
    371: "Panama", 372: "Panama", 373: "Panama", 374: "Panama",
    375: "Saint Vincent and the Grenadines", 376: "Saint Vincent and the Grenadines",
    377: "Saint Vincent and the Grenadines", 378: "British Virgin Islands",
    379: "United States Virgin Islands",
    # Asia
    401: "Afghanistan", 403: "Saudi Arabia", 405: "Bangladesh", 408: "Bahrain",
    410: "Bhutan", 412: "China", 413: "China", 414: "China", 416: "Taiwan",
    417: "Sri Lanka", 419: "India", 422: "Iran", 423: "Azerbaijan", 425: "Iraq",
    428: "Israel", 431: "Japan", 432: "Japan", 434: "Turkmenistan", 436: "Kazakhstan",
    437: "Uzbekistan", 438: "Jordan", 440: "Korea (Republic of)", 441: "Korea (Republic of)",
    443: "Palestine", 445: "Korea (DPR)", 447: "Kuwait", 450: "Lebanon", 451: "Kyrgyzstan",
    453: "Macao", 455: "Maldives", 457: "Mongolia", 459: "Nepal", 461: "Oman",
    463: "Pakistan", 466: "Qatar", 468: "Syria", 470: "United Arab Emirates",
    471: "United Arab Emirates", 472: "Tajikistan", 473: "Yemen", 475: "Yemen",
    477: "Hong Kong", 478: "Bosnia and Herzegovina",
    # Oceania and South-East Asia
    501: "France (Adélie Land)", 503: "Australia", 506: "Myanmar", 508: "Brunei",
    510: "Micronesia", 511: "Palau", 512: "New Zealand", 514: "Cambodia", 515: "Cambodia",
    516: "Christmas Island", 518: "Cook Islands", 520: "Fiji", 523: "Cocos (Keeling) Islands",
    525: "Indonesia", 529: "Kiribati", 531: "Laos", 533: "Malaysia",
    536: "Northern Mariana Islands", 538: "Marshall Islands", 540: "New Caledonia",
    542: "Niue", 544: "Nauru", 546: "French Polynesia", 548: "Philippines",
    550: "Timor-Leste", 553: "Papua New Guinea", 555: "Pitcairn Island",
    557: "Solomon Islands", 559: "American Samoa", 561: "Samoa", 563: "Singapore",
    564: "Singapore", 565: "Singapore", 566: "Singapore", 567: "Thailand", 570: "Tonga",
    572: "Tuvalu", 574: "Viet Nam", 576: "Vanuatu", 577: "Vanuatu",
    578: "Wallis and Futuna",
    # Africa
    601: "South Africa", 603: "Angola", 605: "Algeria", 607: "France (St Paul, Amsterdam)",
    608: "Ascension Island", 609: "Burundi", 610: "Benin", 611: "Botswana",
    612: "Central African Republic", 613: "Cameroon", 615: "Congo", 616: "Comoros",
    617: "Cabo Verde", 618: "France (Crozet)", 619: "Côte d'Ivoire", 620: "Comoros",
    621: "Djibouti", 622: "Egypt", 624: "Ethiopia", 625: "Eritrea", 626: "Gabon",
    627: "Ghana", 629: "Gambia", 630: "Guinea-Bissau", 631: "Equatorial Guinea",
    632: "Guinea", 633: "Burkina Faso", 634: "Kenya", 635: "France (Kerguelen)",
    636: "Liberia", 637: "Liberia", 638: "South Sudan", 642: "Libya", 644: "Lesotho",
    645: "Mauritius", 647: "Madagascar", 649: "Mali", 650: "Mozambique", 654: "Mauritania",
    655: "Malawi", 656: "Niger", 657: "Nigeria", 659: "Namibia", 660: "France (Réunion)",
    661: "Rwanda", 662: "Sudan", 663: "Senegal", 664: "Seychelles", 665: "Saint Helena",
    666: "Somalia", 667: "Sierra Leone", 668: "Sao Tome and Principe", 669: "Eswatini",
    670: "Chad", 671: "Togo", 672: "Tunisia", 674: "Tanzania", 675: "Uganda",
    676: "Congo (Democratic Republic)", 677: "Tanzania", 678: "Zambia", 679: "Zimbabwe",
    # South America
    701: "Argentina", 710: "Brazil", 720: "Bolivia", 725: "Chile", 730: "Colombia",
    735: "Ecuador", 740: "Falkland Islands", 745: "France (Guiana)", 750: "Guyana",
    755: "Paraguay", 760: "Peru", 765: "Suriname", 770: "Uruguay", 775: "Venezuela",
}
SHIP_MIDS = frozenset(MIDS)
DEVICES = {970: "sart", 972: "mob", 974: "epirb"}
#: Kinds that are legitimate stations; everything else is ``invalid``.
VALID_KINDS = frozenset({"ship", "coast", "sar_aircraft", "handheld", "auxiliary", "aton",
                         "sart", "mob", "epirb"})


@dataclass(frozen=True, slots=True)
class MmsiClass:
    """What an MMSI is: ``kind``, its MID and country when it has one, and for ``invalid``
    the ``reason`` (``not_9_digits``, ``unallocated_mid``, ``group_mmsi``)."""

    kind: str
    mid: int | None = None
    country: str | None = None
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.kind in VALID_KINDS


def mmsi_text(mmsi: int) -> str:
    """The nine digits as transmitted (leading zeros restored)."""
    return f"{mmsi:09d}"


def _with_mid(kind: str, mid: int) -> MmsiClass:
    country = MIDS.get(mid)
    if country is None:
        return MmsiClass("invalid", mid, None, "unallocated_mid")
    return MmsiClass(kind, mid, country)


def is_device(mmsi: int) -> bool:
    """An emergency device: AIS-SART (970…), MOB (972…) or EPIRB (974…)."""
    return 970_000_000 <= mmsi < 975_000_000 and mmsi // 1_000_000 in DEVICES


def is_sar_aircraft(mmsi: int) -> bool:
    """A SAR aircraft (111MIDxxx with an allocated MID): no vessel at all.

    The MID matters: 111111111 is a common unset number, and a vessel using it was exempt
    from the dark and pairwise rules (the demo recording has one sending type 1)."""
    return mmsi // 1_000_000 == 111 and (mmsi // 1000) % 1000 in MIDS


def is_ship_mmsi(mmsi: int) -> bool:
    """The common case, fast: a nine-digit ship MMSI with an allocated MID."""
    return 201_000_000 <= mmsi < 776_000_000 and mmsi // 1_000_000 in SHIP_MIDS


#: Placeholders that are not nine identical digits.
_PLACEHOLDER_RUNS = frozenset({123_456_789})


def is_placeholder(mmsi: int) -> bool:
    """A placeholder: nine identical digits (000000000, 111111111, … 999999999) or
    123456789, when :func:`classify` finds it invalid (555555555 and 666666666 carry the
    allocated MIDs of Pitcairn and Somalia: ship numbers, judged as any other).

    Unset and made-up numbers are shared by unrelated transponders all over the world, so
    their fixes far apart are no one identity in two places; ``invalid_mmsi`` names them.
    Other invalid numbers (an IMO number or a 7-digit number entered as the MMSI, an
    unallocated MID) stay one device's, and its jumps are still judged."""
    return (0 <= mmsi <= 999_999_999 and (mmsi % 111_111_111 == 0 or mmsi in _PLACEHOLDER_RUNS)
            and not classify(mmsi).valid)


def classify(mmsi: int) -> MmsiClass:
    """The kind of station an MMSI belongs to (see the module table)."""
    if mmsi < 0 or mmsi > 999_999_999:
        return MmsiClass("invalid", reason="not_9_digits")
    text = mmsi_text(mmsi)
    head = text[0]
    if head == "0":
        if text[1] == "0":
            return _with_mid("coast", int(text[2:5]))
        mid = int(text[1:4])
        return MmsiClass("invalid", mid, MIDS.get(mid), "group_mmsi")
    if head == "9":
        prefix = int(text[:3])
        if prefix in DEVICES:
            return MmsiClass(DEVICES[prefix])
        if text[1] == "8":
            return _with_mid("auxiliary", int(text[2:5]))
        if text[1] == "9":
            return _with_mid("aton", int(text[2:5]))
        return MmsiClass("invalid", reason="unallocated_mid")
    if head == "8":
        return _with_mid("handheld", int(text[1:4]))
    if text.startswith("111"):
        return _with_mid("sar_aircraft", int(text[3:6]))
    return _with_mid("ship", int(text[:3]))
