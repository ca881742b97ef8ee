"""Reddit dumps in, tag-format training text out (``playhouse dataset build``).

The pipeline, one module per step:

* :mod:`~playhouse.dataset.readers` finds the input files and streams their lines
  (zstandard, xz, bz2, gzip or plain NDJSON), reporting bytes read for the progress bar;
* :mod:`~playhouse.dataset.records` decodes a line into a submission or a comment, cleans
  its text and applies the filters (:class:`~playhouse.dataset.records.Filters`);
* :mod:`~playhouse.dataset.threads` rebuilds each thread and writes one example per comment
  chain with :func:`playhouse.grammar.training_line`;
* :mod:`~playhouse.dataset.buckets` holds the temporary files that keep memory flat: records
  partitioned by thread, examples scattered for the shuffle;
* :mod:`~playhouse.dataset.build` runs the passes and writes ``train.txt``, ``eval.txt`` and
  ``stats.json``; :mod:`~playhouse.dataset.stats` counts and reports.

Nothing here imports torch or transformers unless a tokenizer is asked for.
"""

from __future__ import annotations

from playhouse.errors import PlayhouseError


class DatasetError(PlayhouseError):
    """The dataset cannot be built; the message names the input and what is wrong with it."""
