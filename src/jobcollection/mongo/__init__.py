"""The modules that talk to pymongo or Motor: the `Store` every write and read goes through
(codec options, primary reads, errors translated, commands counted), the indexes, the database
server's time and change streams. Implementation."""
