"""vman-magic benchmarks, measured side by side with its peers; ``python -m benchmarks``.

Not part of the installed package: run from a checkout. See ``README.md`` here.
"""
