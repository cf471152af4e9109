"""The local service: `Core` runs each operation on a MongoDB collection through its applier
(saving, claiming, reporting with follow-ups, managing, the job server, rate-limited claims),
applying the rules of `jobcollection.rules` through the `Store`. Implementation."""
