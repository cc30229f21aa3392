"""Many completions at once: ``complete_many``, ``complete_frame`` and parameter sweeps.

Built on :mod:`vman_magic.client`; progress goes through a small protocol so
the engine itself never imports IPython or ipywidgets.
"""
