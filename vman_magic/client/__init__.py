"""Talking to an OpenAI-compatible ``/v1/completions`` endpoint over HTTP.

httpx plus :mod:`vman_magic.core`. No IPython, no ipywidgets, no demo server:
the client works the same in a script, a kernel or a web app.
"""
