"""Relay global IDs and opaque cursors.

A global ID is base64 of `Type:pk`, as strawberry's relay support encodes them, so a client
cache can key every object by its `id`. Arguments accept a global ID of the right type or a
bare database id (the reference workload's operations send `"1"`), and refuse anything else
with BAD_USER_INPUT instead of a 500.
"""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import datetime

from bff.errors import BffError, ErrorCode

MAX_DB_ID = 2**63 - 1


# Bound of the memos below: ~100 bytes an entry, a few MB each when full.
_MEMO_SIZE = 1 << 16


def to_global_id(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


@functools.lru_cache(maxsize=_MEMO_SIZE)
def memoized_global_id(type_name: str, pk: int) -> str:
    """`to_global_id` for objects every screen reads again (users, posts: 51 per Home).

    Not for objects sent once (chat messages): a memo of those would only fill up.
    """
    return to_global_id(type_name, pk)


def _positive_int(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value <= MAX_DB_ID else None


def decode_global_id(value: str) -> tuple[str, int] | None:
    """(type, pk) for a well-formed global ID, else None."""
    if len(value) > 200:
        return None
    try:
        text = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    type_name, sep, pk_text = text.partition(":")
    pk = _positive_int(pk_text)
    if not sep or not type_name.isidentifier() or pk is None:
        return None
    return type_name, pk


def parse_id(value: str, type_name: str, argument: str) -> int:
    """The database id behind an ID argument that must point at a `type_name`."""
    bare = _positive_int(value)
    if bare is not None:
        return bare
    decoded = decode_global_id(value)
    if decoded is None:
        raise BffError(ErrorCode.BAD_USER_INPUT, f"`{argument}` is not a valid ID", argument=argument)
    if decoded[0] != type_name:
        raise BffError(
            ErrorCode.BAD_USER_INPUT,
            f"`{argument}` must be the ID of a {type_name}, not of a {decoded[0]}",
            argument=argument,
        )
    return decoded[1]


# The reference encoding (tests, bench/home_from_rows.py); the feed keeps its texts per post id (schema/feed.py).
@functools.lru_cache(maxsize=_MEMO_SIZE)
def encode_feed_cursor(created_at: datetime, post_id: int) -> str:
    return feed_cursor_of(created_at.isoformat(), post_id)


def feed_cursor_of(created_at_iso: str, post_id: int) -> str:
    """A feed cursor from its post's `created_at.isoformat()` (for callers that hold it already)."""
    return base64.b64encode(f"{created_at_iso}|{post_id}".encode()).decode()


def decode_feed_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        created, _, pk = base64.b64decode(cursor, validate=True).decode().partition("|")
        moment, post_id = datetime.fromisoformat(created), _positive_int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        moment, post_id = None, None
    if moment is None or post_id is None or moment.tzinfo is None:
        raise BffError(
            ErrorCode.BAD_USER_INPUT, "`after` is not a cursor of this connection", argument="after"
        )
    return moment, post_id


def encode_message_cursor(message_id: int) -> str:
    return base64.b64encode(f"Message:{message_id}".encode()).decode()


def decode_message_cursor(cursor: str, argument: str) -> int:
    return parse_id(cursor, "Message", argument)


def page_size(value: int | None, default: int, maximum: int, argument: str) -> int:
    """`first`/`last` bounded: phones ask for pages, never for everything."""
    if value is None:
        return default
    if value < 0 or value > maximum:
        raise BffError(
            ErrorCode.BAD_USER_INPUT,
            f"`{argument}` must be between 0 and {maximum}",
            argument=argument,
            maximum=maximum,
        )
    return value
