"""The pure transition rules: every filter and update a transition sends, as functions of the
document and "now" (`transitions`), dependency bookkeeping (`dependencies`) and the counters of
rate limits (`ratecounters`). No I/O: unit-tested as plain dicts. Implementation."""
