"""Keep the test suite's measurements out of the user's profile: every test process (and the
subprocesses it starts, which inherit the environment) profiles into a temporary file."""

import os
import tempfile

os.environ.setdefault(
    "THREADX_PROFILE", os.path.join(tempfile.mkdtemp(prefix="threadx-tests-"), "profile.json")
)
