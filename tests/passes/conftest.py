"""Each pass test runs with its own `Remarks` current (`remarks.current()`), so no
test sees another's remarks and none has to clear them."""

import pytest

from qcc.passes.remarks import collecting


@pytest.fixture(autouse=True)
def _own_remarks():
    with collecting():
        yield
