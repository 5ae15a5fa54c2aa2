"""A check for every money test: the books must balance after the scenario.

Call ``await assert_ledger_clean(db)`` at the end of any test that moves money (top-ups, charging
sessions, adjustments, refunds). It runs ``csms.services.ledger.check_ledger`` on the test's
database and fails with the readable report when anything is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from csms.services.ledger import check_ledger

if TYPE_CHECKING:
    from csms.services.ledger import LedgerReport
    from csms.store.db import Database


async def assert_ledger_clean(db: Database) -> LedgerReport:
    """Fail the test unless the ledger check finds nothing wrong; return the report."""
    report = await db.run(check_ledger)
    if not report.ok:
        pytest.fail(report.render(), pytrace=False)
    return report
