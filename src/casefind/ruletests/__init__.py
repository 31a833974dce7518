"""Test patients declared beside a rule (``<rule>.test.yml``), checked on every engine.

``load`` reads and validates a test file against its rule (every value located at
file:line:col); ``build`` turns the declared patients into a temporary store through the
real ingest; ``check`` evaluates the rule on each engine and compares what it finds with
what the file expects, using the same selection and reasons as ``casefind run``.
See docs/rule-tests.md for the format.
"""
from __future__ import annotations

from casefind.ruletests.check import Failure, RuleTestResult, check_file, run_tests  # noqa: F401
from casefind.ruletests.load import TEST_SUFFIX, RuleTestFile, load_test_file, rule_test_file  # noqa: F401
