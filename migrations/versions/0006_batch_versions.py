"""batch_versions: one change counter per batch, bumped by every change a ranking page shows

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 15:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing batches get no row: a missing row reads as version 0 and the first change makes it 1.
    # Pages cached by an older release are keyed by its own fingerprints, so nothing stale is served.
    op.create_table(
        "batch_versions",
        sa.Column("batch_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_batch_versions")),
    )


def downgrade() -> None:
    op.drop_table("batch_versions")
