"""Posts and the home feed connection."""

from __future__ import annotations

import functools
from datetime import datetime
from itertools import islice
from typing import cast

import strawberry
from strawberry.types import Info

from bff.known import known_as
from bff.row_lists import Read, RowList, RowProjection
from resolvers.context import Context
from resolvers.rows import PostRow, PostView
from schema.node import Node
from schema.relay import feed_cursor_of, memoized_global_id
from schema.users import USER_ROWS, User, then


@strawberry.type(description="A post in someone's feed.")
class Post(Node):
    body: str = strawberry.field(description="The text of the post.")
    created_at: datetime = strawberry.field(description="When it was posted (ISO 8601, UTC).")
    pk: strawberry.Private[int]
    author_pk: strawberry.Private[int]
    # Filled by list resolvers that fetched them by plan (None: loaded on demand). Compiled plans
    # read them without calling the resolvers (bff/known.py).
    known_like_count: strawberry.Private[int | None]
    known_viewer_has_liked: strawberry.Private[bool | None]
    known_author: strawberry.Private[User | None]

    @classmethod
    def from_row(cls, row: PostRow, view: PostView | None = None) -> Post:
        stats = view.stats if view is not None else None
        author = view.author if view is not None else None
        return cls(
            id=strawberry.ID(memoized_global_id("Post", row.id)),
            body=row.body,
            created_at=row.created_at,
            pk=row.id,
            author_pk=row.author_id,
            known_like_count=stats.like_count if stats is not None else None,
            known_viewer_has_liked=stats.viewer_has_liked if stats is not None else None,
            known_author=User.from_row(author) if author is not None else None,
        )

    @strawberry.field(description="How many users like this post.")
    @known_as("known_like_count")
    def like_count(self, info: Info[Context, None]) -> int:
        if self.known_like_count is not None:
            return self.known_like_count
        return then(info.context.loaders.like_count_by_post_id.load(self.pk), int)  # type: ignore[no-any-return]

    @strawberry.field(description="Whether the signed-in viewer likes this post (false when anonymous).")
    @known_as("known_viewer_has_liked")
    def viewer_has_liked(self, info: Info[Context, None]) -> bool:
        if self.known_viewer_has_liked is not None:
            return self.known_viewer_has_liked
        return then(info.context.loaders.viewer_liked_by_post_id.load(self.pk), bool)  # type: ignore[no-any-return]

    @strawberry.field(description="Who wrote the post.")
    @known_as("known_author")
    def author(self, info: Info[Context, None]) -> User:
        if self.known_author is not None:
            return self.known_author
        return then(info.context.loaders.user_by_id.load(self.author_pk), User.from_row)  # type: ignore[no-any-return]


@strawberry.type(description="A post and its position in the connection.")
class PostEdge:
    cursor: str = strawberry.field(description="Opaque position: pass it as `after` to continue from here.")
    node: Post = strawberry.field(description="The post.")

    @classmethod
    def from_view(cls, view: PostView) -> PostEdge:
        return cls(cursor=view_cursor(view), node=Post.from_row(view.post, view))


# A post's cursor and its `createdAt` text, by post id: every feed showing the post writes both.
# Checked against the row's `created_at` (and its tzinfo object: an equal instant in another
# zone has other text), so a changed row gets new text. Keyed by id, not by the datetime: the
# rows are read fresh for each page, and hashing an aware datetime costs more than the lookup.
_TEXTS: dict[int, tuple[datetime, str, str]] = {}
_TEXTS_SIZE = 1 << 16


def _post_texts(post: PostRow) -> tuple[datetime, str, str]:
    """(created_at, cursor, created_at.isoformat()) of `post`."""
    created_at = post.created_at
    texts = _TEXTS.get(post.id)
    if texts is None or texts[0] != created_at or texts[0].tzinfo is not created_at.tzinfo:
        iso = created_at.isoformat()
        if len(_TEXTS) >= _TEXTS_SIZE:
            # The older half at once. One oldest entry per insert would cost a scan from the front
            # of the dict past every entry deleted before it (until the dict is rebuilt).
            for stale in list(islice(_TEXTS, _TEXTS_SIZE // 2)):
                del _TEXTS[stale]
        texts = _TEXTS[post.id] = (created_at, feed_cursor_of(iso, post.id), iso)
    return texts


def view_cursor(view: PostView) -> str:
    return _post_texts(view.post)[1]


def view_created_at_text(view: PostView) -> str:
    """`createdAt` as strawberry's DateTime serializes it (`isoformat()`), for answers from rows."""
    return _post_texts(view.post)[2]


# A feed page read from its views by compiled plans (bff/row_lists.py): what `PostEdge.from_view`
# and `Post.from_row` hold. Stats or an author the page did not fetch (None) send the page to
# the objects, whose resolvers load them.
POST_ROWS = RowProjection(
    Post,
    PostView,
    lambda view: Post.from_row(view.post, view),
    {
        "id": Read("post.id", convert=functools.partial(memoized_global_id, "Post")),
        "body": Read("post.body"),
        "createdAt": Read(convert=view_created_at_text, serialized=True),
        "likeCount": Read("stats.like_count"),
        "viewerHasLiked": Read("stats.viewer_has_liked"),
        "author": Read("author", rows=USER_ROWS),
    },
)
EDGE_ROWS = RowProjection(
    PostEdge,
    PostView,
    PostEdge.from_view,
    {"cursor": Read(convert=view_cursor), "node": Read(rows=POST_ROWS)},
)


@strawberry.type(description="Where a page sits in a connection.")
class PageInfo:
    end_cursor: str | None = strawberry.field(description="Cursor of the last edge; null on an empty page.")
    has_next_page: bool = strawberry.field(description="Whether more items follow this page.")
    start_cursor: str | None = strawberry.field(default=None, description="Cursor of the first edge.")
    has_previous_page: bool = strawberry.field(default=False, description="Whether items precede this page.")


@strawberry.type(description="A page of posts, newest first (Relay cursor connection).")
class PostConnection:
    edges: list[PostEdge] = strawberry.field(description="The posts of this page, newest first.")
    page_info: PageInfo = strawberry.field(description="Cursors and whether more pages follow.")

    @classmethod
    def from_views(
        cls, views: list[PostView], has_next_page: bool, has_previous_page: bool
    ) -> PostConnection:
        return cls(
            # A sequence of PostEdge to whoever iterates it; compiled plans read the views.
            edges=cast("list[PostEdge]", RowList(EDGE_ROWS, views)),
            page_info=PageInfo(
                end_cursor=view_cursor(views[-1]) if views else None,
                has_next_page=has_next_page,
                start_cursor=view_cursor(views[0]) if views else None,
                has_previous_page=has_previous_page,
            ),
        )
