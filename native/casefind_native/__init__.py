"""casefind's native core: Numba kernels and the small runtime they need.

Depends on numpy and numba only. Everything here works on plain arrays (day numbers,
dictionary indices, per-patient offsets) so generated code can call it directly.
"""
import os

# Numba caches compiled code beside a module's source unless told otherwise; inside
# site-packages that leaves folders pip does not know about (a later reinstall then finds
# a stray namespace package). Keep the cache in the user's cache directory instead.
if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "casefind", "numba")

from casefind_native.grouping import gather, group_by_patient  # noqa: F401
