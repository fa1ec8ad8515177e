"""What a setting's value must be, checked when it is read (also by the command's own
options): a bad value is named in one line, never left for a library to fail on later."""

import ipaddress
import re
from typing import Literal

from pymongo import uri_parser
from pymongo.errors import PyMongoError

_SRV = "mongodb+srv://"
# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens (each
# label checked by itself: one pass, no backtracking across labels).
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# What MongoDB refuses in a database name.
_BAD_DATABASE_CHARS = set('/\\. "$*<>:|?\0')
LogLevel = Literal["critical", "error", "warning", "info", "debug", "trace"]


def mongodb_uri(uri: str) -> str:
    """The URI as the driver will parse it, checked without connecting (a `mongodb+srv`
    name is checked as written, not resolved: that would need the network here)."""
    if not uri or uri.startswith("mongomock://"):
        return uri
    checked = uri
    if uri.startswith(_SRV):
        hosts = uri[len(_SRV) :].rpartition("@")[2].partition("/")[0].partition("?")[0]
        if "," in hosts or ":" in hosts:
            raise ValueError("a mongodb+srv:// URI names one host, without a port")
        checked = "mongodb://" + uri[len(_SRV) :]
    try:
        uri_parser.parse_uri(checked)
    except (PyMongoError, ValueError) as exc:
        # The driver's words, never the URI itself: it may hold a password.
        raise ValueError(f"not a MongoDB URI: {str(exc).rstrip('.')}") from None
    return uri


def database_name(name: str) -> str:
    if not name or len(name.encode()) > 63 or _BAD_DATABASE_CHARS & set(name):
        raise ValueError('a MongoDB database name: 1 to 63 bytes, none of /\\. "$*<>:|? or NUL')
    return name


def host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise ValueError("an IP address or a host name to bind") from None
    return host


def forwarded_allow_ips(value: str) -> str:
    for item in (part.strip() for part in value.split(",")):
        if item == "*" or not value.strip():
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(
                f"{item!r} is not an address or network (comma-separated, or *)"
            ) from None
    return value


def lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value
