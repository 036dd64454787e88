"""Studies on Ray: a sweep file's cells (`file`, `fields`), the driver that submits them as Ray tasks
(`driver`), the task a worker runs (`task`), the sweep's state on disk (`state`), its progress lines
(`progress`), the summary (`report`) and the local or joined cluster (`cluster`)."""
