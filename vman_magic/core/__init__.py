"""The contract every layer shares: parameters, errors, requests and results, settings.

Standard library only. The client, the batch engine, the notebook faces and
the demo server all build on these modules; none of them imports anything
above it.
"""
