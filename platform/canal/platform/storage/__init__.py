"""Object storage: every module's files, in S3 buckets by purpose, behind one small interface."""
