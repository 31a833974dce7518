"""``casefind serve``: the clinicians' review web app (docs/app.md).

A practice's clinicians sign in, see the latest list of each rule for their own practices with
their patients named (re-identified through ``casefind.reidentify``, audited), decide, and
leave an audit trail; analysts see every practice pseudonymised; auditors read the trail.
"""
