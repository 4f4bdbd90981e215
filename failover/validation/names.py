"""
Storage element and catalog names: parsing the caller's lists and checking them against the configuration.

A name list may be one string, a comma-separated string, or an iterable of strings (whose items may hold
commas too). Surrounding spaces are stripped everywhere, empty names dropped, and duplicates dropped keeping
the first appearance: order matters, since SEs are tried in order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from failover.errors import InvalidInput, UnknownCatalog, UnknownStorageElement

__all__ = ["CatalogChoice", "parse_name_list", "select_catalogs", "validate_ses"]


@dataclass(frozen=True)
class CatalogChoice:
    """
    A configured catalog, as the validator sees it.

    Args:
        name: the catalog's name, e.g. ``"FileCatalog"``.
        master: whether it is a master catalog (used alone with ``masterCatalogOnly``).
    """

    name: str
    master: bool


def parse_name_list(value: str | Iterable[str] | None) -> list[str]:
    """
    Turn a name, a comma-separated string or a list of names into a clean list.

    >>> parse_name_list(" a, b,,c ")
    ['a', 'b', 'c']
    >>> parse_name_list(["b ", "a,b"])
    ['b', 'a']

    Raises:
        InvalidInput: ``value`` is neither a string nor an iterable of strings.
    """
    parts = (part.strip() for item in _strings(value) for part in item.split(","))
    return list(dict.fromkeys(part for part in parts if part))


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return items
    raise InvalidInput(f"Expected a name, a comma-separated string or a list of names, not {value!r}")


def validate_ses(ses: str | Iterable[str] | None, configured_ses: Collection[str]) -> tuple[str, ...]:
    """
    Parse the destination SE names and check that each is configured.

    An empty result is not an error here: the upload then fails as a whole with no SE tried, as SPEC §2
    says for an empty list, and that is the caller's to report.

    Args:
        ses: the SE names, in the order they are to be tried.
        configured_ses: the names of the configured SEs.

    Returns:
        The names, stripped and de-duplicated, in order.

    Raises:
        UnknownStorageElement: a name is not configured (its ``se`` field names it).
    """
    known = set(parse_name_list(configured_ses))
    names = parse_name_list(ses)
    for name in names:
        if name not in known:
            raise UnknownStorageElement(f"Storage element {name!r} is not configured", se=name)
    return tuple(names)


def select_catalogs(
    requested: str | Iterable[str] | None, configured: Sequence[CatalogChoice], master_only: bool
) -> tuple[str, ...]:
    """
    Choose the catalogs to register in.

    ``None``, ``""`` or a list with no names means every configured catalog, in configured order. Otherwise
    the requested names are used, in first-appearance order. Requested names are checked even with
    ``master_only``, since a misspelt name is a mistake either way; then the configured master catalogs
    replace the selection.

    Args:
        requested: DIRAC's ``fileCatalog``: a name, a comma-separated string or a list of names.
        configured: the configured catalogs, in order.
        master_only: DIRAC's ``masterCatalogOnly``.

    Raises:
        UnknownCatalog: a requested name is not configured (its ``catalog`` field names it), no master
            catalog is configured while ``master_only`` is set, or no catalog is configured at all.
    """
    known = list(dict.fromkeys(choice.name.strip() for choice in configured))
    names = parse_name_list(requested)
    for name in names:
        if name not in known:
            raise UnknownCatalog(f"Catalog {name!r} is not configured", catalog=name)
    if master_only:
        return _master_catalogs(configured)
    if not (names or known):
        raise UnknownCatalog("No catalog configured")
    return tuple(names or known)


def _master_catalogs(configured: Sequence[CatalogChoice]) -> tuple[str, ...]:
    masters = tuple(dict.fromkeys(choice.name.strip() for choice in configured if choice.master))
    if not masters:
        raise UnknownCatalog("No master catalog configured")
    return masters
