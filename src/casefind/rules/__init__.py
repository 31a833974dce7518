"""The rules language: YAML rule files, their expression grammar, the typed IR."""
