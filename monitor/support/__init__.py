"""Support: what every layer may use — secret masking, log lines, metrics, this process's
identity among instances, backoff times."""
