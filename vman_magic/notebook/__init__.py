"""The notebook faces: the ``%%complete``/``%vman`` magics, the Playground panel and live views.

The only layer that imports IPython and ipywidgets. Every face builds the same
request and calls the same client and batch engine as the Python API.
"""
