"""Secrets: which parts of configured URLs are credentials, and masking them wherever text shows.

Two tools, for two kinds of text. `mask_url` rewrites one URL structurally for display (status,
JSON output, the status page, the Atom feed, log lines naming a feed): its userinfo and the
values of credential-like query parameters become `***`, whatever their length. `redact` masks
every registered secret inside free text that may quote a URL (a server's error, Apprise's own
DEBUG lines, a traceback). Secrets are registered from the notify URLs, the feed URLs and the
database URL when the config is opened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose values are credentials, whatever their length, by their name folded to
# letters and digits: `token`, `api_key`, `accessToken`, `X-Api-Key`, `passkey`, `client_secret`…
_CREDENTIAL_PARTS = ("token", "secret", "passw", "passkey", "apikey", "authkey", "accesskey",
                     "privatekey", "sessionid", "signature", "credential", "bearer", "jwt")
_CREDENTIAL_NAMES = frozenset(("key", "sig", "pass", "pwd", "sid", "session", "auth",
                               "authorization", "hash"))
_CREDENTIAL_ENDS = ("key", "pass", "pwd", "sig", "auth")
_HOSTLIKE = re.compile(r"^([a-z0-9-]+\.)+[a-z]{2,}$|^\d{1,3}(\.\d{1,3}){3}$|^localhost$", re.I)
# Registered secrets are replaced anywhere in a line, so a very short one would garble logs.
_SHORTEST = 3
_secrets: list[str] = []  # longest first, so a secret inside another is masked whole


def _is_credential(name: str) -> bool:
    """Whether a query parameter (or an Apprise `+Header`) carries a credential."""
    name = unquote(name)
    if name.startswith("+"):
        return True
    folded = re.sub(r"[^a-z0-9]", "", name.lower())
    return folded in _CREDENTIAL_NAMES or folded.endswith(_CREDENTIAL_ENDS) \
        or any(part in folded for part in _CREDENTIAL_PARTS)


def mask_url(url: str) -> str:
    """`url` with its userinfo and credential-like query values replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _mask_pair(pair: str) -> str:
    name, sep, value = pair.partition("=")
    return f"{name}={MASK}" if sep and value and _is_credential(name) else pair


def secrets_of(url: str, guess: bool = True) -> list[str]:
    """Parts of a URL that are or may be credentials (for masking inside free text).

    Always: the userinfo's password (or a lone user name, which is how token URLs carry a
    token), the values of credential-like query parameters and of Apprise `+Header=` values.
    With `guess` (Apprise URLs, whose paths hold tokens): other parts that look like tokens
    (8+ characters with a digit, or 16+), so host names and plain paths stay readable.
    """
    try:
        parts = urlsplit(url if "://" in url else "//" + url)
    except ValueError:
        return []
    found: set[str] = set()
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        user, has_password, password = userinfo.partition(":")
        found.add(password if has_password else user)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if _is_credential(name):
            found.add(value)
    rest = url.split("://", 1)[-1] if guess else ""
    for piece in re.split(r"[/@?&=:,;#]", rest):
        has_digit = any(c.isdigit() for c in piece)
        if (len(piece) >= 16 or (len(piece) >= 8 and has_digit)) and not _HOSTLIKE.match(piece):
            found.add(piece)
    spelled = {form for secret in found for form in (secret, unquote(secret), quote(secret, ""),
                                                     quote_plus(secret))}
    return sorted((s for s in spelled if len(s) >= _SHORTEST), key=len, reverse=True)


def register_secrets(secrets: Iterable[str]) -> None:
    """Add strings that must never appear in a log line or a displayed error."""
    known = set(_secrets) | {s for s in secrets if len(s) >= _SHORTEST}
    _secrets[:] = sorted(known, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every registered secret masked."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text
