"""ISO 4217 currency codes in circulation, and their minor units."""

from __future__ import annotations

import re
from decimal import Decimal

# Code → number of minor-unit digits (ISO 4217 list one, funds and metals left out).
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
        "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP "
        "GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD "
        "LSL MAD MDL MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN "
        "PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP "
        "SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES VED WST XCD XCG YER ZAR ZMW "
        "ZWG".split(),
        2,
    ),
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}

CURRENCIES = frozenset(MINOR_UNITS)


# An amount as people type it: 1250, 1250.5, 1,250.50 (groups of three). No sign, exponent,
# NaN or infinity: Decimal would take "1e999999" or "sNaN" and fail far from here.
# ASCII digits only ("\d" would also take "٣" or "１２").
_AMOUNT = re.compile(r"([0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,15})(?:\.([0-9]{1,12}))?")


def parse_major_units(text: str, currency: str) -> int:
    """``"1,250.5"`` in USD → ``125050`` minor units; ``ValueError`` for what is not an amount
    of that currency (a sign, an exponent, more decimals than the currency has)."""
    match = _AMOUNT.fullmatch(text.replace(" ", ""))
    if match is None:
        raise ValueError("Enter an amount such as 1,250.00")
    digits = MINOR_UNITS.get(currency, 2)
    whole, fraction = match.group(1).replace(",", ""), (match.group(2) or "").rstrip("0")
    if len(fraction) > digits:
        raise ValueError(f"{currency} amounts have at most {digits} decimals")
    return int(whole) * 10**digits + int(fraction.ljust(digits, "0") or 0)


def format_money(amount: int, currency: str) -> str:
    """Integer minor units as people read them: ``12,345.60 USD`` (``JPY`` has no decimals,
    ``KWD`` three): the dashboard's and the emails' money."""
    digits = MINOR_UNITS.get(currency, 2)
    major = Decimal(amount).scaleb(-digits)
    return f"{major:,.{digits}f} {currency}"


def format_percent(value: float) -> str:
    """``12.5 %``; whole numbers without decimals."""
    return f"{value:g} %"


def format_major_units(amount: int, currency: str) -> str:
    """Integer minor units as a plain amount to edit: ``125050`` USD → ``1250.50``."""
    digits = MINOR_UNITS.get(currency, 2)
    return f"{Decimal(amount).scaleb(-digits):.{digits}f}"
