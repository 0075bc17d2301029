"""cancel, delete and incremental polling: cancel marks, the evaluation change sequence

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("cancel_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
        # Existing rows are "changed at 0": a first poll (no cursor) returns all of them anyway.
        batch.add_column(sa.Column("updated_seq", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_evaluations_updated_seq"), "evaluations", ["updated_seq"])
    op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_counter")),
    )
    op.execute("INSERT INTO change_counter (id, value) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE evaluation_change_seq START WITH 1")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS evaluation_change_seq")
    op.drop_table("change_counter")
    op.drop_index(op.f("ix_evaluations_updated_seq"), table_name="evaluations")
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("changed_at")
        batch.drop_column("updated_seq")
        batch.drop_column("cancel_requested_at")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("cancel_reason")
        batch.drop_column("cancelled_at")
