"""The method layer at the edge: the original's methods by name with their wire-shaped
parameters (`jc.call`, the remote API, DDP), parsed into operations, checked against the
allow/deny rules, run on the local service. Implementation."""
