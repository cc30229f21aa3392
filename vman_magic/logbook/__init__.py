"""The local history of every completion: recording, reading, the cache, and what batches resume from.

Standard library only (``sqlite3``; ``platformdirs`` for the default folder),
and no IPython: the client records through :mod:`.session`.

* :mod:`.rows` -- a ``Completion`` as a row and back; the cache key of a request
* :mod:`.db` -- the SQLite file: opening it safely, its tables, every statement
* :mod:`.writer` -- the one thread per process that writes rows
* :mod:`.session` -- this process's switches and the calls the client and batches make
* :mod:`.entries` -- ``history()``, ``load()`` and the entries they return

(Named ``logbook`` because ``vman_magic.history`` is the public function.)
"""
