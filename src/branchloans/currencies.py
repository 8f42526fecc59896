"""ISO 4217 currencies that a loan may be made in, with their minor units.

Only codes in circulation are listed; precious metals, testing and "no currency" codes
(XAU, XTS, XXX, ...) have no minor unit and are not money a borrower can owe. The funds
codes with four decimals (CLF, the Chilean Unidad de Fomento, and UYW, Uruguay's Unidad
Previsional) are units of account that loans are indexed in, so they are taken at their four.

The one table of the service: kept by hand because no ISO 4217 library is a dependency
(babel's and pycountry's data are bigger than the table). Migration 0010's
`currency_minor_units()` repeats it for the database's CHECK constraints; a test holds the two
together.
"""

from decimal import Decimal
from types import MappingProxyType

_BY_MINOR_UNITS: dict[int, str] = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
    2: (
        "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BMD BND BOB BOV BRL BSD BTN BWP"
        " BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB"
        " EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES"
        " KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR"
        " MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD"
        " RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP"
        " TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
    ),
}

MINOR_UNITS: MappingProxyType[str, int] = MappingProxyType(
    {code: units for units, codes in _BY_MINOR_UNITS.items() for code in codes.split()}
)
"""Currency code -> number of decimal places of its minor unit (2 for INR, 0 for VND)."""


def is_currency(code: str) -> bool:
    """Whether `code` is an ISO 4217 currency in circulation."""
    return code in MINOR_UNITS


_UNITS = {code: Decimal(1).scaleb(-units) for code, units in MINOR_UNITS.items()}
_UNLISTED_UNIT = Decimal("0.01")


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of `currency`: 0.01 for USD, 1 for VND, 0.001 for KWD."""
    return _UNITS[currency]


def in_minor_units(amount: Decimal, currency: str) -> Decimal:
    """`amount` written with exactly its currency's decimals (1000.125 KWD, 1000 JPY).

    Exact for the amounts the database holds, which its CHECK constraints keep within the
    minor unit; an amount stored before them (1000.00 JPY) loses only zeros. A code missing
    from the list (written by psql, say) gets 2 decimals, as in the database.
    """
    return amount.quantize(_UNITS.get(currency, _UNLISTED_UNIT))
