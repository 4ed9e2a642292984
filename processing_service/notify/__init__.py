"""notify: settle the job, publish its event, deliver its signed webhook once."""
