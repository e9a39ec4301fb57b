"""field channels: missed-call call-backs, line checks per focal point and zone

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("callback_pending", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.alter_column("callback_pending", server_default=None)
    with op.batch_alter_table("focal_points", schema=None) as batch_op:
        batch_op.add_column(sa.Column("line_check_sent_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.add_column(sa.Column("line_check_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("zones", schema=None) as batch_op:
        batch_op.drop_column("line_check_days")
    with op.batch_alter_table("focal_points", schema=None) as batch_op:
        batch_op.drop_column("line_check_sent_at")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("callback_pending")
