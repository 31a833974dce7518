"""casefind's native core: Numba kernels and the small runtime they need.

Depends on numpy and numba only. Everything here works on plain arrays (day numbers,
dictionary indices, per-patient offsets) so generated code can call it directly.
"""
from casefind_native.grouping import gather, group_by_patient  # noqa: F401
