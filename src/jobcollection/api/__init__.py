"""What an application holds: `JobsAPI` (`jobs`) and `JobCollection` (`collection`), `Job`,
`JobQueue` (`queue`), typed tasks, waiting for jobs, the seam (`JobService`) they run on, and
the OpenTelemetry spans they emit. Implementation: the public names are exported by
`jobcollection`."""
