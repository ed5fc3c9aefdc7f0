"""Strategies and the harness behind tests/test_fuzz.py (property-based fuzzing: client input never produces a 5xx).

`values` (scalar and JSON values), `gen` (the draw helper), `items` and `bodies` (request bodies), `routes` (the
cases each test sends), `runner` (sends a case, checks the answer), `manifest` (the gateway they run against).
"""

import os
import tempfile

# Hypothesis caches what it learns about the code under test (`.hypothesis/constants`) in its storage
# directory, by default under the working directory: keep it out of the repository.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "mlxgw-hypothesis"))
