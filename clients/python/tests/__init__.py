"""Tests of the wp_lite package against the real wp-lite binary (named by WP_LITE_BIN).

Run from the repository root::

    WP_LITE_BIN=target/release/wp-lite python3 -m unittest discover -s clients/python/tests -t clients/python

The package is imported from this checkout (clients/python is put on sys.path), so it
need not be installed.
"""

import os
import sys

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)
