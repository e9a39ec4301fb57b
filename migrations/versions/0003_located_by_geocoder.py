"""reports may be located by the optional online geocoder

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "located_by IN ('coordinates', 'gazetteer', 'home', 'none')"
NEW = "located_by IN ('coordinates', 'gazetteer', 'geocoder', 'home', 'none')"


def _replace(check: str) -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_reports_located_by"), type_="check")
        batch_op.create_check_constraint("located_by", check)


def upgrade() -> None:
    _replace(NEW)


def downgrade() -> None:
    op.execute("UPDATE reports SET located_by = 'home' WHERE located_by = 'geocoder'")
    _replace(OLD)
