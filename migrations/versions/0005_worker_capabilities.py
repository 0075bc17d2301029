"""fleet: worker capabilities, the routed device class of an evaluation, fastest time per device class

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-02 02:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("capabilities", sa.JSON(), nullable=True))
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_class", sa.String(length=8), nullable=True))
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ratio_basis", sa.String(length=16), nullable=True))
    op.create_table(
        "fastest_times",
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("device_class", sa.String(length=128), nullable=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "device_class", "basis", name=op.f("pk_fastest_times")),
    )


def downgrade() -> None:
    op.drop_table("fastest_times")
    with op.batch_alter_table("searches", schema=None) as batch_op:
        batch_op.drop_column("ratio_basis")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_column("device_class")
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_column("capabilities")
