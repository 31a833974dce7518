"""What ``casefind explain RULE`` shows, as (title, text) sections: the IR of each feature as
an indented tree, the rule's codelists once each by name and size, each scan's named slots
(the feature each aggregation serves) and row ranges, and the generated kernels.

The rule is evaluated on the store, not only planned: a later stage's kernels (filters that
read another aggregation) are generated from the values of the stages before it.
"""
from __future__ import annotations

import textwrap
from collections.abc import Iterator

from casefind.rules import ir
from casefind.rules.compile import CompiledRule
from casefind.store import Store


def slot_names(rule: CompiledRule) -> dict[ir.Node, str]:
    """Each aggregation (or trend) in the rule -> the first feature (or criterion), in rule
    order, that uses it: the name ``explain`` gives its slot."""
    names: dict[ir.Node, str] = {}
    named = [*rule.features.items(), *(("include " + k, v) for k, v in rule.include),
             *(("exclude " + k, v) for k, v in rule.exclude), ("population", rule.population)]
    for name, node in named:
        for x in ir.walk(node, into=(ir.ROWS, ir.DATE)):
            if isinstance(x, (ir.Aggregate, ir.Trend)):
                names.setdefault(x, name)
    return names


def ir_section(rule: CompiledRule) -> str:
    """Each feature's tree, an earlier feature it uses shown by name, not again in full."""
    out, earlier = [], {}
    for name, node in rule.features.items():
        out.append(f"{name} : {node.type.value}\n{textwrap.indent(ir.tree(node, names=earlier), '  ')}")
        earlier.setdefault(node, name)
    return "\n".join(out)


def codelist_section(rule: CompiledRule) -> str:
    if not rule.codelists:
        return "(none)"
    return "\n".join(f"{name}: {len(cl.codes)} codes, {len(cl.prefixes)} prefixes ({cl.system})"
                     for name, cl in sorted(rule.codelists.items()))


def sections(rule: CompiledRule, store: Store) -> Iterator[tuple[str, str]]:
    from casefind.engines.native import NativeEngine
    from casefind.lists.run import rule_expressions

    yield f"IR of {rule.name} (as_of {rule.as_of})", ir_section(rule)
    yield "Codelists", codelist_section(rule)
    engine = NativeEngine(store)
    engine.evaluate(rule_expressions(rule), rule.as_of, rule.population)
    names = slot_names(rule)
    for what, program in engine.programs.items():
        yield f"Scan of {what}", program.describe(names, codelists=False)  # listed once above
    for what, kernel in engine.kernels.items():
        yield f"Kernel {kernel.name} ({what})", kernel.source
