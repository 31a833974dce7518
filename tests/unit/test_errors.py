"""One error base (issue 10): every exception class casefind defines derives from
casefind.errors.CasefindError, which the CLI catches once (a located message and an exit
code, never a traceback for a user's mistake). Private classes (a leading underscore) are
internal signals that never leave their module; ``synth._refresh_data`` is a maintainer
script, not part of the product."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import casefind
from casefind.errors import CasefindError

SKIP_MODULES = {"casefind.synth._refresh_data"}


def _exception_classes():
    for info in pkgutil.walk_packages(casefind.__path__, "casefind."):
        if info.name in SKIP_MODULES:
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name
                    and not name.startswith("_")):
                yield obj


def test_every_exception_class_derives_from_the_one_base():
    found = list(_exception_classes())
    assert len(found) >= 15  # the walk found them (there are about twenty)
    strays = [f"{c.__module__}.{c.__qualname__}" for c in found if not issubclass(c, CasefindError)]
    assert not strays, f"derive these from casefind.errors.CasefindError: {strays}"


def test_errors_pickle_as_themselves_whatever_their_init_takes():
    """A Spark executor's error crosses a process boundary by pickle; it must come back with
    its class, message, hint and exit code (casefind.spark.mapper)."""
    import pickle

    from casefind.errors import UsageError
    from casefind.store.shards import ShardedStoreError

    for error in (CasefindError("bad", "fix it"), UsageError("no such date", "give another", option="--as-of"),
                  ShardedStoreError(Path("/s"), 3)):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (back.message, back.hint, back.exit_code, back.args) == (error.message, error.hint,
                                                                         error.exit_code, error.args)
        assert str(back) == str(error)
