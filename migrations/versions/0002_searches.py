"""searches: one fastest time-to-threshold shared by the batches of a search

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 01:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "searches",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("search_id", sa.String(length=128), nullable=False),
        sa.Column("ratio_to_fastest", sa.Float(), nullable=False),
        sa.Column("fastest_stage1_s", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_searches")),
    )


def downgrade() -> None:
    op.drop_table("searches")
