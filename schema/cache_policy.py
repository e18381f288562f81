"""How long each field's answer may be cached, and by whom: the one table of HTTP cache hints.

Keys are `Type.field`. A response's `Cache-Control` is computed by bff/http_cache.py from the
fields its operation selects (through fragments): the smallest `max_age` of the selected fields
that have one, PRIVATE as soon as one is PRIVATE or the request carries a token.

- A root field (`Query.x`) missing here is not cacheable (max age 0 -> `no-store`): a new root
  field must be added here on purpose before any cache keeps it.
- A nested field missing here inherits its parent's policy (`Post.body` is as fresh as the post).
- `max_age=None` only marks the field PRIVATE (it depends on who asks), without a time of its own.

Mutations and responses with errors are never cached, whatever this table says.
"""

from __future__ import annotations

from bff.http_cache import PRIVATE, PUBLIC, Hint

CACHE_POLICY: dict[str, Hint] = {
    # Public reference data: the same for everyone, changing slowly or tolerably late.
    "Query.games": Hint(PUBLIC, 60),
    "Query.user": Hint(PUBLIC, 30),
    "Query.leaderboard": Hint(PUBLIC, 10),
    "Game.leaderboard": Hint(PUBLIC, 10),
    # The viewer's own profile: theirs alone, changed only by their own mutations.
    "Query.viewer": Hint(PRIVATE, 30),
    # Live, viewer-scoped screens: a stale copy would hide new posts and messages.
    "Query.feed": Hint(PRIVATE, 0),
    "Query.chatRoom": Hint(PRIVATE, 0),
    # Anything by global ID may be a chat message: never cached.
    "Query.node": Hint(PRIVATE, 0),
    "Query.nodes": Hint(PRIVATE, 0),
    # Fields whose value depends on who asks, wherever they appear.
    "Post.viewerHasLiked": Hint(PRIVATE, None),
    "User.rooms": Hint(PRIVATE, None),
}
