"""indexes whose cost does not grow with history (dedup candidates, unplanned and updated incidents)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_lat_lon")
        batch_op.drop_index("ix_incidents_status_last_report_at")
        batch_op.create_index("ix_incidents_status_last_report_at", ["status", "last_report_at", "lat", "lon"])
    op.create_index(
        "ix_incidents_unplanned", "incidents", ["id"],
        postgresql_where=sa.text("policy_snapshot IS NULL"), sqlite_where=sa.text("policy_snapshot IS NULL"),
    )
    op.create_index(
        "ix_incidents_update_pending", "incidents", ["id"],
        postgresql_where=sa.text("update_pending = true"), sqlite_where=sa.text("update_pending = 1"),
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_update_pending", table_name="incidents")
    op.drop_index("ix_incidents_unplanned", table_name="incidents")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_incidents_status_last_report_at")
        batch_op.create_index("ix_incidents_status_last_report_at", ["status", "last_report_at"])
        batch_op.create_index("ix_incidents_lat_lon", ["lat", "lon"])
