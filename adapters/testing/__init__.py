"""The adapter conformance suite, installable with the package: subclass it to test your adapter.

    # tests/test_mydb.py in your project (pip install 'retrieval-forge[testing]')
    import pytest
    from adapters.testing import AdapterConformance

    class TestMyDb(AdapterConformance):
        @pytest.fixture
        def adapter(self):
            with MyDbAdapter.from_url("mydb://localhost") as adapter:
                yield adapter

Every answer is compared with the exact in-memory reference (``adapters.memory``) on the same
data; features the adapter's ``Capabilities`` claims must work, the others must raise
``CapabilityError``. ``score_rel`` / ``score_abs`` are the tolerances a subclass may widen, and
``sparse_ok`` may be overridden for engines whose sparse support depends on the server.
"""

import pytest

# Plain asserts in the suite report their operands, as they would in a test module of your own.
pytest.register_assert_rewrite("adapters.testing.conformance")

from adapters.testing.conformance import (  # noqa: E402
    DIM,
    N_DOCS,
    PAYLOAD,
    AdapterConformance,
    assert_same_hits,
    make_records,
)

__all__ = ["DIM", "N_DOCS", "PAYLOAD", "AdapterConformance", "assert_same_hits", "make_records"]
