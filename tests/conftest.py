"""Keep the test suite's measurements out of the user's profile: every test process (and the
subprocesses it starts, which inherit the environment) profiles into a temporary file."""

import os
import tempfile

os.environ.setdefault(
    "THREADX_PROFILE", os.path.join(tempfile.mkdtemp(prefix="threadx-tests-"), "profile.json")
)

# The suite's synthetic entries of other machines carry fixed, old timestamps (exact values that
# only the code under test may change); expiring them after 90 days would make the tests depend
# on the date. Tests of the expiry set the variable themselves.
os.environ.setdefault("THREADX_PROFILE_EXPIRY_DAYS", "0")
