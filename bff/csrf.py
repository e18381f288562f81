"""CSRF (and XS-Search) prevention: refuse GraphQL requests a browser could send without a preflight.

Apollo Server's `csrfPrevention` rule, exactly (apollo-server `preventCsrf.ts`): a request is
safe when
- it has a Content-Type that parses and is not one of the three "simple" ones
  (application/x-www-form-urlencoded, multipart/form-data, text/plain), or a Content-Type that
  does not parse at all (a browser would preflight it); or
- it carries a non-empty `x-apollo-operation-name` or `apollo-require-preflight` header.
Anything else could come from a cross-site <form>, <img> or no-cors fetch and is refused with
400 before it runs.

When the rule applies (CSRF_PREVENTION, docs/decisions.md): `always` is Apollo's behaviour.
`browser` (the default) applies it only to requests showing a browser's marks: a Cookie, an
Origin, or a Sec-Fetch-Site header (every current browser sends Sec-Fetch-Site on every request,
same-origin included). Native apps and server-to-server clients (the graphql-http conformance
audits among them) send plain GETs without those and are served; a browser page cannot strip
them. `off` disables the check.
"""

from __future__ import annotations

from collections.abc import Mapping

NON_PREFLIGHTED_CONTENT_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)
PREFLIGHT_HEADERS = ("x-apollo-operation-name", "apollo-require-preflight")
BROWSER_MARKS = ("cookie", "origin", "sec-fetch-site")
MESSAGE = (
    "This operation has been blocked as a potential Cross-Site Request Forgery (CSRF). Please either "
    "specify a 'content-type' header (with a type that is not one of "
    + ", ".join(sorted(NON_PREFLIGHTED_CONTENT_TYPES))
    + ") or provide a non-empty value for one of the following headers: "
    + ", ".join(PREFLIGHT_HEADERS)
)


def _essence(content_type: str) -> str | None:
    """The `type/subtype` of a MIME type, lower-cased; None when it does not parse."""
    essence = content_type.split(";", 1)[0].strip().lower()
    kind, slash, subtype = essence.partition("/")
    if not slash or not kind or not subtype or any(c.isspace() for c in essence):
        return None
    return essence


def preflighted(headers: Mapping[str, str]) -> bool:
    """Whether a browser must have sent a CORS preflight before this request (Apollo's test)."""
    content_type = headers.get("content-type")
    if content_type is not None:
        essence = _essence(content_type)
        if essence is None or essence not in NON_PREFLIGHTED_CONTENT_TYPES:
            return True
    return any(headers.get(name) for name in PREFLIGHT_HEADERS)


def looks_like_browser(headers: Mapping[str, str]) -> bool:
    return any(name in headers for name in BROWSER_MARKS)


def refused(headers: Mapping[str, str], mode: str) -> bool:
    """True when the request must be refused as a potential CSRF."""
    if mode == "off" or preflighted(headers):
        return False
    return mode == "always" or looks_like_browser(headers)
