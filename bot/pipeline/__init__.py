"""Events in: the webhook intake, the event stream and its drain, the RQ queues, the family
registry (what a family brings, how a DM reply command looks) and the surge bookkeeping detectors share."""
