"""incident updates (throttled corroboration SMS) and the merged status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('open', 'acknowledged', 'resolved', 'false_alarm')"
NEW_STATUSES = "status IN ('open', 'acknowledged', 'resolved', 'false_alarm', 'merged')"


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("update_pending", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("last_update_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_constraint(op.f("ck_incidents_status"), type_="check")
        batch_op.create_check_constraint("status", NEW_STATUSES)
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.alter_column("update_pending", server_default=None)


def downgrade() -> None:
    op.execute("UPDATE incidents SET status = 'resolved' WHERE status = 'merged'")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_incidents_status"), type_="check")
        batch_op.create_check_constraint("status", OLD_STATUSES)
        batch_op.drop_column("last_update_at")
        batch_op.drop_column("update_pending")
