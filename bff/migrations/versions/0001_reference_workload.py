"""The reference workload's tables (names kept as in shared/reference-workload.md).

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# bigint ids on Postgres; SQLite only auto-assigns ids to an INTEGER PRIMARY KEY.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def _pk() -> sa.Column[int]:
    return sa.Column("id", ID, sa.Identity(), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "users",
        _pk(),
        sa.Column("handle", sa.Text(), nullable=False, unique=True),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("avatar_url", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "follows",
        sa.Column("follower_id", ID, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("followee_id", ID, sa.ForeignKey("users.id"), primary_key=True),
    )
    op.create_table(
        "posts",
        _pk(),
        sa.Column("author_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "likes",
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("post_id", ID, sa.ForeignKey("posts.id"), primary_key=True),
    )
    op.create_table("games", _pk(), sa.Column("name", sa.Text(), nullable=False))
    op.create_table(
        "scores",
        sa.Column("game_id", ID, sa.ForeignKey("games.id"), primary_key=True),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table("chat_rooms", _pk(), sa.Column("name", sa.Text(), nullable=False))
    op.create_table(
        "room_members",
        sa.Column("room_id", ID, sa.ForeignKey("chat_rooms.id"), primary_key=True),
        sa.Column("user_id", ID, sa.ForeignKey("users.id"), primary_key=True),
    )
    op.create_table(
        "messages",
        _pk(),
        sa.Column("room_id", ID, sa.ForeignKey("chat_rooms.id"), nullable=False),
        sa.Column("author_id", ID, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("client_message_id", sa.Text(), nullable=False),
        sa.UniqueConstraint("author_id", "client_message_id", name="messages_author_client_message_key"),
    )
    op.create_index("follows_followee_idx", "follows", ["followee_id"])
    op.create_index(
        "posts_author_created_idx", "posts", ["author_id", sa.text("created_at DESC"), sa.text("id DESC")]
    )
    op.create_index("likes_post_idx", "likes", ["post_id"])
    op.create_index("scores_game_points_idx", "scores", ["game_id", sa.text("points DESC"), "user_id"])
    op.create_index("room_members_user_idx", "room_members", ["user_id"])
    op.create_index("messages_room_idx", "messages", ["room_id", sa.text("id DESC")])
    # What `bff seed` loaded, so re-running it does not load twice.
    op.create_table(
        "bff_seed",
        sa.Column("size", sa.Text(), primary_key=True),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("seeded_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("bff_seed")
    for table in (
        "messages",
        "room_members",
        "chat_rooms",
        "scores",
        "games",
        "likes",
        "posts",
        "follows",
        "users",
    ):
        op.drop_table(table)
