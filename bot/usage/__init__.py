"""Usage and cost: ``/imagine usage`` (:mod:`bot.usage.desk`), ``proofroom usage``
(:mod:`bot.usage.cli`), both summing the worker's usage ledger (``engine.ledger``) with
:mod:`bot.usage.report`; the chart of images per day is :mod:`bot.usage.chart`."""
